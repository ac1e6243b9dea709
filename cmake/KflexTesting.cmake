# SPDX-License-Identifier: Apache-2.0
find_package(GTest REQUIRED)
include(GoogleTest)
# kflex_add_test_executable(NAME LABEL src... [HOST_WIDE test-filter]) builds one gtest binary and
# registers its tests. The tests HOST_WIDE names (a gtest filter, Suite.Name:Suite.Name) use
# something only one can hold per host (a kubelet's fixed ports, /etc/rancher): CTest runs them one
# at a time (RESOURCE_LOCK host_wide), the others in parallel.
function(kflex_add_test_executable name label)
  cmake_parse_arguments(PARSE_ARGV 2 arg "" "HOST_WIDE" "")
  add_executable(${name} ${arg_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE kflex::build_settings kflex_test_support GTest::gtest_main GTest::gmock)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests)
  if(arg_HOST_WIDE)
    gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST TEST_PREFIX "${name}." TEST_FILTER "-${arg_HOST_WIDE}"
      PROPERTIES LABELS ${label} ENVIRONMENT "KFLEX_BIN_DIR=${PROJECT_BINARY_DIR}/bin")
    gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST TEST_PREFIX "${name}." TEST_FILTER "${arg_HOST_WIDE}"
      PROPERTIES LABELS ${label} ENVIRONMENT "KFLEX_BIN_DIR=${PROJECT_BINARY_DIR}/bin" RESOURCE_LOCK host_wide)
  else()
    gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST TEST_PREFIX "${name}." PROPERTIES LABELS ${label}
      ENVIRONMENT "KFLEX_BIN_DIR=${PROJECT_BINARY_DIR}/bin")
  endif()
endfunction()
