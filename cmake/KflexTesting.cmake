# SPDX-License-Identifier: Apache-2.0
find_package(GTest REQUIRED)
include(GoogleTest)
# kflex_add_test_executable(NAME LABEL src...) builds one gtest binary and registers its tests.
function(kflex_add_test_executable name label)
  add_executable(${name} ${ARGN})
  target_link_libraries(${name} PRIVATE kflex::build_settings kflex_test_support GTest::gtest_main GTest::gmock)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests)
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST TEST_PREFIX "${name}." PROPERTIES LABELS ${label}
    ENVIRONMENT "KFLEX_BIN_DIR=${PROJECT_BINARY_DIR}/bin")
endfunction()
