#!/usr/bin/env bash
# Installs what `make chaos` needs beyond redis-server and redis-sentinel
# (scripts/install-redis.sh): iproute2's ip, for network namespaces, veth
# pairs, a bridge and neighbour entries (the cuts). Nothing else: the cuts
# need no firewall.
set -euo pipefail
command -v ip >/dev/null && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
echo "installing iproute2 from Debian's packages"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq iproute2 >/dev/null
