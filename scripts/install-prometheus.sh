#!/usr/bin/env bash
# Installs Debian's prometheus package (the server and promtool) when
# either is missing. The metrics tests check the shipped alert rules with
# promtool and run a real Prometheus against a cluster.
set -euo pipefail
command -v prometheus >/dev/null && command -v promtool >/dev/null && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
echo "installing prometheus from Debian's packages"
$sudo apt-get update -qq
# Without the recommended exporters: only the server and promtool are needed.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# Debian starts the packaged service on :9090; tests start their own on
# free ports.
$sudo systemctl stop prometheus 2>/dev/null || $sudo service prometheus stop 2>/dev/null || true
