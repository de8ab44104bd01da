# Warning and sanitizer flags for petrel's own targets (not for the dependencies).
add_library(petrel_flags INTERFACE)
target_compile_options(petrel_flags INTERFACE -Wall -Wextra -Wshadow -Wnon-virtual-dtor
                                              -Wno-unused-parameter)
if(PETREL_WERROR)
  target_compile_options(petrel_flags INTERFACE -Werror)
endif()
if(PETREL_SANITIZE)
  set(_san -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_compile_options(petrel_flags INTERFACE ${_san})
  target_link_options(petrel_flags INTERFACE ${_san})
endif()
if(PETREL_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "PETREL_FUZZ needs clang (CXX=clang++); this is ${CMAKE_CXX_COMPILER_ID}")
  endif()
  # Instrument petrel's own code for coverage; the fuzz targets add -fsanitize=fuzzer.
  target_compile_options(petrel_flags INTERFACE -fsanitize=fuzzer-no-link)
endif()
