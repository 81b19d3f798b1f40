#!/usr/bin/env bash
# Installs HAProxy from Debian's package when it is missing. The worked
# example in deploy/haproxy and its integration test run a real haproxy.
set -euo pipefail
command -v haproxy >/dev/null && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
echo "installing haproxy from Debian's packages"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq haproxy >/dev/null
# Debian starts the packaged service; the test starts its own on free ports.
$sudo systemctl stop haproxy 2>/dev/null || $sudo service haproxy stop 2>/dev/null || true
