#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The whole test suite, from a fresh clone on a fresh Debian 12 machine: install dependencies,
# build with warnings as errors, run every CTest test (unit and integration). This is the test
# command of README.md, and .ci/run runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh -DKFLEX_WARNINGS_AS_ERRORS=ON
ctest --test-dir build -j"$(nproc)" --output-on-failure --timeout 300
