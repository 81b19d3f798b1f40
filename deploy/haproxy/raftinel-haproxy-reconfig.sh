#!/usr/bin/env bash
# client-reconfig-script for Raftinel (or Redis Sentinel): re-points HAProxy
# at the promoted master through its runtime API.
#
#   coordinatorctl set mymaster client-reconfig-script /etc/raftinel/raftinel-haproxy-reconfig.sh
#
# Arguments (Sentinel's layout):
#   <master-name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>
# Environment:
#   HAPROXY_ADMIN_ADDR    host:port of the runtime API (stats socket ipv4@...
#                         level admin); several, comma-separated, for several
#                         HAProxy instances. Default 127.0.0.1:9999.
#   HAPROXY_ADMIN_SOCKET  a Unix socket path instead (needs socat).
#   HAPROXY_BACKEND       default redis_<master-name>
#   HAPROXY_SERVER        default master
#   RAFTINEL_EVENT_SEQ    set by Raftinel: the same on a repeated run.
#
# It may run more than once for one promotion (delivery is at least once):
# setting the same address again changes nothing. Exit codes follow the
# hook rules: 0 done, 1 retry later (HAProxy unreachable), 2 do not retry
# (bad arguments, unknown backend or server).
set -uo pipefail

if [ $# -ne 7 ]; then
  echo "usage: $0 <master-name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>" >&2
  exit 2
fi
name=$1 to_ip=$6 to_port=$7
backend=${HAPROXY_BACKEND:-redis_${name}}
server=${HAPROXY_SERVER:-master}
case "$to_port" in ''|*[!0-9]*) echo "bad port '$to_port'" >&2; exit 2 ;; esac

# ask ADDR COMMAND: one command on the runtime API, which answers and closes.
ask() {
  local target=$1 cmd=$2
  if [ -n "${HAPROXY_ADMIN_SOCKET:-}" ]; then
    printf '%s\n' "$cmd" | socat - "UNIX-CONNECT:${HAPROXY_ADMIN_SOCKET}"
    return
  fi
  local host=${target%:*} port=${target##*:}
  exec 3<>"/dev/tcp/${host}/${port}" || return 1
  printf '%s\n' "$cmd" >&3
  cat <&3
  exec 3<&-
}

status=0
targets=${HAPROXY_ADMIN_ADDR:-127.0.0.1:9999}
[ -n "${HAPROXY_ADMIN_SOCKET:-}" ] && targets=socket
IFS=',' read -r -a admins <<< "$targets"
for admin in "${admins[@]}"; do
  if ! reply=$(ask "$admin" "set server ${backend}/${server} addr ${to_ip} port ${to_port}" 2>&1); then
    echo "haproxy at ${admin}: runtime API unreachable: ${reply}" >&2
    status=1
    continue
  fi
  case "$reply" in
    *"No such"*|*"Require"*|*"Unknown"*|*"denied"*|*"not allowed"*)
      echo "haproxy at ${admin}: ${reply}" >&2
      exit 2 ;;
  esac
  # Close the sessions still open to the old master, so clients reconnect
  # (to the new one) instead of writing to a demoted replica.
  ask "$admin" "shutdown sessions server ${backend}/${server}" >/dev/null 2>&1 || true
  echo "haproxy at ${admin}: ${backend}/${server} -> ${to_ip}:${to_port} (event ${RAFTINEL_EVENT_SEQ:-?}): ${reply}"
done
exit $status
