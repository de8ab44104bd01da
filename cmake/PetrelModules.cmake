# Modules: each folder of lib/ (and each runtime adapter) is a target of its own, with
# its sources listed and the modules it depends on declared, and the build enforces
# the declaration. A module's headers are included by their path in the source tree
# ("lib/store/store.h"), but the source tree is on no include path: each module's
# folder is staged in the build tree,
#   ${CMAKE_BINARY_DIR}/modules/<name>/lib/<name>  ->  ${PROJECT_SOURCE_DIR}/lib/<name>
# (a symbolic link), and that directory is on the include path only of the targets
# that link petrel_<name>_headers: the module itself, the modules that declare it in
# DEPENDS, and the tests that test it. An include that runs against the declared flow
# fails to compile:
#   lib/spec/spec.cpp:8:10: fatal error: lib/store/store.h: No such file or directory
# (A relative include such as "../store/store.h" is not caught; petrel writes none.)
#
# petrel_module(<name> [STATIC] [DIR <folder>] SOURCES <file>... [DEPENDS <module>...])
#   petrel_<name>          the code: an OBJECT library, archived with the other core
#                          modules into libpetrel.a (lib/CMakeLists.txt); with STATIC an
#                          archive of its own (libpetrel_image.a, libpetrel_crun.a, ...)
#   petrel_<name>_headers  the right to include <folder>/*.h, and the public API
#   DIR      the folder of the module, relative to the project (default lib/<name>)
#   SOURCES  relative to the calling CMakeLists.txt
#   DEPENDS  the modules whose headers it includes or whose code it calls, public API
#            included. Never transitive: a module includes only what it declares.
# Each module gets petrel_flags; external libraries are linked by the caller.
function(petrel_module name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "STATIC" "DIR" "SOURCES;DEPENDS")
  if(NOT arg_DIR)
    set(arg_DIR lib/${name})
  endif()
  petrel_stage_headers(${name} ${arg_DIR})
  if(arg_STATIC)
    add_library(petrel_${name} STATIC ${arg_SOURCES})
  else()
    add_library(petrel_${name} OBJECT ${arg_SOURCES})
  endif()
  target_link_libraries(petrel_${name} PRIVATE petrel_${name}_headers petrel_flags)
  foreach(dep IN LISTS arg_DEPENDS)
    if(NOT TARGET petrel_${dep})
      message(FATAL_ERROR "module ${name}: depends on ${dep}, which is not declared before it")
    endif()
    target_link_libraries(petrel_${name} PRIVATE petrel_${dep}_headers)
    # The code: an archive links the archive holding the dependency; core modules are
    # all in libpetrel.a, so one of them only records the edge.
    get_target_property(dep_type petrel_${dep} TYPE)
    if(dep_type STREQUAL "STATIC_LIBRARY")
      target_link_libraries(petrel_${name} PUBLIC petrel_${dep})
    elseif(arg_STATIC)
      target_link_libraries(petrel_${name} PUBLIC petrel)
    else()
      target_link_libraries(petrel_${name} PRIVATE petrel_${dep})
    endif()
  endforeach()
endfunction()

# petrel_stage_headers(<name> <folder>): petrel_<name>_headers, an INTERFACE target
# through which <folder>/*.h (relative to the project) can be included by that path,
# together with the public API in include/. petrel_module uses it; the tests use it
# for their own helpers (tests/unit/*.h).
function(petrel_stage_headers name folder)
  set(stage ${CMAKE_BINARY_DIR}/modules/${name})
  get_filename_component(parent ${stage}/${folder} DIRECTORY)
  file(MAKE_DIRECTORY ${parent})
  file(CREATE_LINK ${PROJECT_SOURCE_DIR}/${folder} ${stage}/${folder} SYMBOLIC)
  add_library(petrel_${name}_headers INTERFACE)
  target_include_directories(petrel_${name}_headers
    INTERFACE $<BUILD_INTERFACE:${stage}> $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>)
endfunction()

# petrel_install_adapter(<name>): installs a runtime adapter for embedders:
# libpetrel_<name>.a, its public header include/petrel/<name>.h, and petrel-<name>.pc,
# configured from the calling folder's petrel-<name>.pc.in.
function(petrel_install_adapter name)
  include(GNUInstallDirs)
  install(TARGETS petrel_${name} ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(FILES include/petrel/${name}.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/petrel)
  configure_file(petrel-${name}.pc.in ${CMAKE_CURRENT_BINARY_DIR}/petrel-${name}.pc @ONLY)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/petrel-${name}.pc
          DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endfunction()
