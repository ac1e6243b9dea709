# SPDX-License-Identifier: Apache-2.0
# Every dependency comes from a Debian package through find_package; nothing is downloaded.
find_package(Boost 1.81 REQUIRED CONFIG COMPONENTS headers)
find_package(OpenSSL 3 REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(CLI11 REQUIRED)
find_package(simdjson REQUIRED)
find_package(Threads REQUIRED)
# sd_notify for Type=notify units (libsystemd-dev).
find_package(PkgConfig REQUIRED)
pkg_check_modules(SYSTEMD REQUIRED IMPORTED_TARGET libsystemd)
# PostgreSQL client (libpq-dev): the shared database of k8s control planes.
pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET libpq)
# yaml-cpp 0.7 exports "yaml-cpp", 0.8 "yaml-cpp::yaml-cpp": hide the difference.
add_library(kflex_yaml INTERFACE)
add_library(kflex::yaml ALIAS kflex_yaml)
if(TARGET yaml-cpp::yaml-cpp)
  target_link_libraries(kflex_yaml INTERFACE yaml-cpp::yaml-cpp)
else()
  target_link_libraries(kflex_yaml INTERFACE yaml-cpp)
endif()

# The hub allocates and frees many small JSON nodes from several threads at once; jemalloc
# (libjemalloc-dev) measured 10-20% more creates/s and 30% more updates/s than glibc's malloc in
# bench/. -DKFLEX_JEMALLOC=OFF builds with the system allocator.
option(KFLEX_JEMALLOC "Link kflex-hub with jemalloc" ON)
add_library(kflex_allocator INTERFACE)
add_library(kflex::allocator ALIAS kflex_allocator)
if(KFLEX_JEMALLOC)
  find_library(JEMALLOC_LIBRARY NAMES jemalloc)
  find_path(JEMALLOC_INCLUDE_DIR jemalloc/jemalloc.h)
  if(NOT JEMALLOC_LIBRARY OR NOT JEMALLOC_INCLUDE_DIR)
    message(FATAL_ERROR "jemalloc not found: install libjemalloc-dev (scripts/install-deps.sh does), "
                        "or configure with -DKFLEX_JEMALLOC=OFF to use the system allocator")
  endif()
  target_link_libraries(kflex_allocator INTERFACE ${JEMALLOC_LIBRARY})
  target_include_directories(kflex_allocator INTERFACE ${JEMALLOC_INCLUDE_DIR})
  target_compile_definitions(kflex_allocator INTERFACE KFLEX_WITH_JEMALLOC=1)
endif()
