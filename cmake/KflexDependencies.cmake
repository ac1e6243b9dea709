# SPDX-License-Identifier: Apache-2.0
# Every dependency comes from a Debian package through find_package; nothing is downloaded.
find_package(Boost 1.81 REQUIRED CONFIG COMPONENTS headers)
find_package(OpenSSL 3 REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(CLI11 REQUIRED)
find_package(Threads REQUIRED)
# yaml-cpp 0.7 exports "yaml-cpp", 0.8 "yaml-cpp::yaml-cpp": hide the difference.
add_library(kflex_yaml INTERFACE)
add_library(kflex::yaml ALIAS kflex_yaml)
if(TARGET yaml-cpp::yaml-cpp)
  target_link_libraries(kflex_yaml INTERFACE yaml-cpp::yaml-cpp)
else()
  target_link_libraries(kflex_yaml INTERFACE yaml-cpp)
endif()
