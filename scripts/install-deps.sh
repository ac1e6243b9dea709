#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs everything kflex needs to build and test, from Debian 12's packages only.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  g++ cmake make pkg-config ca-certificates \
  libboost1.81-dev libssl-dev zlib1g-dev libsqlite3-dev nlohmann-json3-dev libyaml-cpp-dev libcli11-dev libjemalloc-dev libsimdjson-dev libsystemd-dev libpq-dev postgresql sqlite3 systemd dpkg-dev file help2man lintian rpm rpmlint \
  libgtest-dev libgmock-dev python3-kubernetes >/dev/null
echo "kflex build dependencies installed"
