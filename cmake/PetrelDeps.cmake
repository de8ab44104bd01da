# Every dependency comes from a Debian package; ports/debian/install-deps installs them.
find_package(PkgConfig REQUIRED)
pkg_check_modules(LIBUV REQUIRED IMPORTED_TARGET libuv)
pkg_check_modules(SQLITE3 REQUIRED IMPORTED_TARGET sqlite3)
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
if(PETREL_WITH_CRUN)  # the image store unpacks layers with it
  find_package(LibArchive 3.4 REQUIRED)  # CMake's own module: LibArchive::LibArchive
  # and pulls from registries with it (7.85: CURLOPT_PROTOCOLS_STR)
  find_package(CURL 7.85 REQUIRED)  # CMake's own module: CURL::libcurl
endif()
find_package(Threads REQUIRED)

# The containerd adapter (runtime-adapters/containerd): its messages are C from
# protobuf-c (libprotobuf-c-dev, and protoc-c of protobuf-c-compiler at build time), its
# HTTP/2 is libcurl through the image store's loader (so it needs PETREL_WITH_CRUN). On
# by default where all that is found; CMake says why when it is off.
pkg_check_modules(PROTOBUF_C QUIET IMPORTED_TARGET libprotobuf-c)
find_program(PROTOC_C_EXECUTABLE protoc-c)
set(_containerd_missing "")
if(NOT PROTOBUF_C_FOUND)
  list(APPEND _containerd_missing "pkg-config finds no libprotobuf-c (libprotobuf-c-dev)")
endif()
if(NOT PROTOC_C_EXECUTABLE)
  list(APPEND _containerd_missing "no protoc-c on PATH (protobuf-c-compiler)")
endif()
if(NOT PETREL_WITH_CRUN)
  list(APPEND _containerd_missing "PETREL_WITH_CRUN is off (its libcurl loader)")
endif()
if(_containerd_missing)
  set(_containerd_default OFF)
else()
  set(_containerd_default ON)
endif()
option(PETREL_WITH_CONTAINERD "Build the containerd adapter (gRPC over its socket)"
       ${_containerd_default})
string(REPLACE ";" "; " _containerd_missing "${_containerd_missing}")
if(PETREL_WITH_CONTAINERD AND _containerd_missing)
  message(FATAL_ERROR "petrel: PETREL_WITH_CONTAINERD=ON, but ${_containerd_missing}")
elseif(NOT PETREL_WITH_CONTAINERD AND _containerd_missing)
  message(STATUS "petrel: containerd adapter OFF: ${_containerd_missing}; with them, "
                 "configure with -DPETREL_WITH_CONTAINERD=ON")
elseif(NOT PETREL_WITH_CONTAINERD)
  message(STATUS "petrel: containerd adapter OFF: PETREL_WITH_CONTAINERD=OFF")
else()
  message(STATUS "petrel: containerd adapter ON (protobuf-c ${PROTOBUF_C_VERSION}, "
                 "${PROTOC_C_EXECUTABLE})")
endif()

# mbedTLS ships no CMake or pkg-config file in Debian 12.
find_path(MBEDTLS_INCLUDE_DIR mbedtls/sha256.h REQUIRED)
find_library(MBEDCRYPTO_LIBRARY mbedcrypto REQUIRED)
add_library(petrel_mbedcrypto INTERFACE)
target_include_directories(petrel_mbedcrypto INTERFACE ${MBEDTLS_INCLUDE_DIR})
target_link_libraries(petrel_mbedcrypto INTERFACE ${MBEDCRYPTO_LIBRARY})
# TLS and X.509 for the peers (lib/net).
find_library(MBEDX509_LIBRARY mbedx509 REQUIRED)
find_library(MBEDTLS_LIBRARY mbedtls REQUIRED)
add_library(petrel_mbedtls INTERFACE)
target_link_libraries(petrel_mbedtls INTERFACE ${MBEDTLS_LIBRARY} ${MBEDX509_LIBRARY}
                                               petrel_mbedcrypto)

# canonical/raft (lib/cluster) with its libuv backend.
pkg_check_modules(RAFT REQUIRED IMPORTED_TARGET raft>=0.15)

# http_parser (the control API's HTTP/1.1 parser) ships no CMake or pkg-config file in
# Debian 12 either.
find_path(HTTP_PARSER_INCLUDE_DIR http_parser.h REQUIRED)
find_library(HTTP_PARSER_LIBRARY http_parser REQUIRED)
add_library(petrel_http_parser INTERFACE)
target_include_directories(petrel_http_parser INTERFACE ${HTTP_PARSER_INCLUDE_DIR})
target_link_libraries(petrel_http_parser INTERFACE ${HTTP_PARSER_LIBRARY})

# yaml-cpp 0.7 exports the target "yaml-cpp"; newer ones "yaml-cpp::yaml-cpp".
if(TARGET yaml-cpp::yaml-cpp)
  set(PETREL_YAML_TARGET yaml-cpp::yaml-cpp)
else()
  set(PETREL_YAML_TARGET yaml-cpp)
endif()

if(PETREL_TESTS)
  find_package(doctest REQUIRED)
endif()

# pkg-config files find the install prefix relative to themselves, so an installed
# tree can be moved (staging dirs of firmware builds, `cmake --install --prefix`).
include(GNUInstallDirs)
file(RELATIVE_PATH PETREL_PC_TO_PREFIX "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")

# What the image store (libpetrel_image) adds to a pkg-config file of an adapter that
# uses it (petrel-crun, petrel-docker): the libraries are static, so their dependencies
# go to Requires and Libs, not .private. libarchive and libcurl are each either loaded
# with dlopen (-ldl) or linked, and then named as a package so that --static brings in
# what it links.
set(PETREL_IMAGE_PC_REQUIRES "")
set(PETREL_IMAGE_PC_LIBS "")
if(PETREL_DLOPEN_LIBARCHIVE OR PETREL_DLOPEN_LIBCURL)
  set(PETREL_IMAGE_PC_LIBS "${CMAKE_DL_LIBS}")
  if(PETREL_IMAGE_PC_LIBS AND NOT PETREL_IMAGE_PC_LIBS MATCHES "^-")
    set(PETREL_IMAGE_PC_LIBS "-l${PETREL_IMAGE_PC_LIBS}")
  endif()
endif()
if(NOT PETREL_DLOPEN_LIBARCHIVE)
  string(APPEND PETREL_IMAGE_PC_REQUIRES " libarchive")  # its .pc names what --static needs
endif()
if(NOT PETREL_DLOPEN_LIBCURL)
  string(APPEND PETREL_IMAGE_PC_REQUIRES " libcurl")
endif()
