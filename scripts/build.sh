#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Configures and builds kflex into ./build (binaries in build/bin). Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
cmake --build build -j"$(nproc)"
