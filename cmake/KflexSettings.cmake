# SPDX-License-Identifier: Apache-2.0
# kflex::build_settings carries the language level, warnings and sanitizers for every target.
add_library(kflex_build_settings INTERFACE)
add_library(kflex::build_settings ALIAS kflex_build_settings)
target_compile_features(kflex_build_settings INTERFACE cxx_std_20)
# Designated initializers may leave members to their defaults: not worth a warning.
target_compile_options(kflex_build_settings INTERFACE -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)
# GCC 12 reports a false mismatched-new-delete on Asio's coroutine frames (they use their own
# operator new/delete pair through a recycling allocator).
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(kflex_build_settings INTERFACE -Wno-mismatched-new-delete)
endif()
if(KFLEX_WARNINGS_AS_ERRORS)
  target_compile_options(kflex_build_settings INTERFACE -Werror)
endif()
target_include_directories(kflex_build_settings INTERFACE ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}/generated)
# Asio and Beast are compiled once, in shared/net/asio_impl.cpp.
target_compile_definitions(kflex_build_settings INTERFACE
  BOOST_ASIO_SEPARATE_COMPILATION BOOST_BEAST_SEPARATE_COMPILATION BOOST_ASIO_NO_DEPRECATED)
# Hardening, as Debian builds its packages (dpkg-buildflags): fortified libc calls (they need an
# optimized build), a strong stack protector, relocations read-only and resolved at load.
if(NOT KFLEX_SANITIZE)
  target_compile_options(kflex_build_settings INTERFACE -fstack-protector-strong -fstack-clash-protection)
  target_compile_definitions(kflex_build_settings INTERFACE $<$<NOT:$<CONFIG:Debug>>:_FORTIFY_SOURCE=2>)
  target_link_options(kflex_build_settings INTERFACE -Wl,-z,relro -Wl,-z,now)
endif()
if(KFLEX_SANITIZE)
  string(REPLACE ";" "," _kflex_san "${KFLEX_SANITIZE}")
  target_compile_options(kflex_build_settings INTERFACE -fsanitize=${_kflex_san} -fno-omit-frame-pointer)
  target_link_options(kflex_build_settings INTERFACE -fsanitize=${_kflex_san})
endif()
