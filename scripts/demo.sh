#!/usr/bin/env bash
# Starts a local Raftinel demo: three redis-server processes (a master and two
# replicas) and three coordinator nodes on 127.0.0.1, all data in a temporary
# folder. Ctrl-C stops every process it started and removes the folder.
# SECURE=1 (make demo SECURE=1) runs it secured: a CA and node certificates
# made with coordinatorctl tls, TLS on Raft, gRPC and the Sentinel ports,
# TLS-only redis-servers reached over TLS, and an auth file with an admin
# token and a read-only Sentinel user.
set -euo pipefail
cd "$(dirname "$0")/.."

REDIS_PORTS=(6380 6381 6382)
RAFT_PORTS=(7001 7002 7003)
GRPC_PORTS=(7101 7102 7103)
# One Sentinel port per node: all three on the default 26379 would collide.
SENTINEL_PORTS=(26380 26381 26382)
bin=$PWD/bin

for p in "${REDIS_PORTS[@]}" "${RAFT_PORTS[@]}" "${GRPC_PORTS[@]}" "${SENTINEL_PORTS[@]}"; do
  if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
    echo "demo: port $p on 127.0.0.1 is taken; stop whatever listens there and try again" >&2
    exit 1
  fi
done

dir=$(mktemp -d -t raftinel-demo.XXXXXX)
pids=()
cleanup() {
  trap - INT TERM HUP EXIT
  # Output piped elsewhere (make demo | tee log) loses its reader on the
  # same Ctrl-C: a write would then end this script by SIGPIPE before the
  # waits and the rm below.
  trap '' PIPE
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # With the terminal closed (SIGHUP) this echo fails, and under set -e a
  # failing echo before the kills left every process running.
  { echo; echo "stopping the demo"; } 2>/dev/null || true
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup INT TERM HUP EXIT

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0
    sleep 0.1
  done
  echo "demo: nothing listens on port $1 after 10 s; see $dir" >&2
  return 1
}

secure=()
sentinel_cli=()
redis_tls=()
if [ "${SECURE:-}" = 1 ]; then
  certs=$dir/certs
  "$bin/coordinatorctl" tls create-ca --dir "$certs" >/dev/null
  for i in 1 2 3; do
    "$bin/coordinatorctl" tls create-cert --dir "$certs" --node "n$i" --ip 127.0.0.1 >/dev/null
  done
  # The redis-servers serve TLS only; the nodes reach them with a client
  # certificate of the same CA.
  "$bin/coordinatorctl" tls create-cert --dir "$certs" --server redis --ip 127.0.0.1 >/dev/null
  "$bin/coordinatorctl" tls create-cert --dir "$certs" --client raftinel >/dev/null
  redis_tls=(--tls-cert-file "$certs/redis.pem" --tls-key-file "$certs/redis-key.pem"
    --tls-ca-cert-file "$certs/ca.pem" --tls-replication yes)
  token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  apppass=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  cat >"$dir/auth" <<AUTH
# NAME ROLE SECRET
demo-admin admin $token
app sentinel-read $apppass
AUTH
  chmod 600 "$dir/auth"
  export COORDINATOR_TLS_CA=$certs/ca.pem COORDINATOR_TOKEN=$token
  sentinel_cli=(--tls --cacert "$certs/ca.pem" --user app --pass "$apppass" --no-auth-warning)
fi
node_security() { # the node's security flags, when SECURE=1
  [ "${SECURE:-}" = 1 ] || return 0
  secure=(--tls-cert "$certs/n$1.pem" --tls-key "$certs/n$1-key.pem" --tls-ca "$certs/ca.pem" --auth-file "$dir/auth"
    --redis-tls-ca "$certs/ca.pem" --redis-tls-cert "$certs/raftinel.pem" --redis-tls-key "$certs/raftinel-key.pem")
}

for i in 0 1 2; do
  port=${REDIS_PORTS[$i]}
  mkdir -p "$dir/redis-$port"
  if [ "${SECURE:-}" = 1 ]; then
    args=(--port 0 --tls-port "$port" ${redis_tls[@]+"${redis_tls[@]}"})
  else
    args=(--port "$port")
  fi
  args+=(--bind 127.0.0.1 --dir "$dir/redis-$port" --save "" --appendonly no --daemonize no)
  [ "$i" -gt 0 ] && args+=(--replicaof 127.0.0.1 "${REDIS_PORTS[0]}")
  redis-server "${args[@]}" >"$dir/redis-$port.log" 2>&1 &
  pids+=($!)
done

boot="n1=127.0.0.1:${RAFT_PORTS[0]},n2=127.0.0.1:${RAFT_PORTS[1]},n3=127.0.0.1:${RAFT_PORTS[2]}"
for i in 0 1 2; do
  node_security $((i + 1))
  "$bin/coordinator" --id "n$((i + 1))" --data-dir "$dir/n$((i + 1))" \
    --raft-addr "127.0.0.1:${RAFT_PORTS[$i]}" --grpc-addr "127.0.0.1:${GRPC_PORTS[$i]}" \
    --sentinel-addr "127.0.0.1:${SENTINEL_PORTS[$i]}" ${secure[@]+"${secure[@]}"} \
    --bootstrap "$boot" >"$dir/n$((i + 1)).log" 2>&1 &
  pids+=($!)
done
for p in "${REDIS_PORTS[@]}" "${GRPC_PORTS[@]}" "${SENTINEL_PORTS[@]}"; do wait_port "$p"; done

export COORDINATOR_ADDR="127.0.0.1:${GRPC_PORTS[0]},127.0.0.1:${GRPC_PORTS[1]},127.0.0.1:${GRPC_PORTS[2]}"
ctl="$bin/coordinatorctl"
# The first write waits for the first leader; retry while the cluster forms.
for _ in $(seq 100); do
  "$ctl" monitor mymaster "127.0.0.1:${REDIS_PORTS[0]}" --quorum 2 --down-after 1s --failover-timeout 10s >/dev/null 2>&1 && break
  sleep 0.2
done
# Wait until every node's Sentinel endpoint lists both replicas as linked.
for p in "${SENTINEL_PORTS[@]}"; do
  for _ in $(seq 150); do
    linked=$(redis-cli ${sentinel_cli[@]+"${sentinel_cli[@]}"} -p "$p" SENTINEL replicas mymaster 2>/dev/null | grep -A1 -x master-link-status | grep -cx ok || true)
    [ "$linked" = 2 ] && break
    sleep 0.2
  done
done

echo
"$ctl" status
echo
"$ctl" master mymaster
cat <<MSG

Raftinel is running: 3 coordinator nodes and 3 redis-server (master on
${REDIS_PORTS[0]}, replicas on ${REDIS_PORTS[1]} and ${REDIS_PORTS[2]}); logs and data in $dir.
Events are printed below as they happen. In another shell, try:

  export COORDINATOR_ADDR=$COORDINATOR_ADDR
  bin/coordinatorctl watch mymaster          # follow the master as an application would
  kill -9 ${pids[0]}                           # kill the master: a replica is promoted
  bin/coordinatorctl master mymaster         # replicas, votes, journal, events
  bin/coordinatorctl failover mymaster       # a planned switchover that loses no write
  redis-cli -p ${SENTINEL_PORTS[0]} SENTINEL get-master-addr-by-name mymaster
  kill -9 \$(pgrep -f 'coordinator --id n1')  # the cluster elects a new leader

Press Ctrl-C to stop everything.

MSG
if [ "${SECURE:-}" = 1 ]; then
  cat <<MSG
Secured: TLS everywhere (the redis-servers serve TLS only), certificates in
$certs, tokens in $dir/auth. The shell that runs coordinatorctl needs:

  export COORDINATOR_TLS_CA=$COORDINATOR_TLS_CA
  export COORDINATOR_TOKEN=$COORDINATOR_TOKEN
  redis-cli ${sentinel_cli[*]} -p ${SENTINEL_PORTS[0]} SENTINEL get-master-addr-by-name mymaster
  redis-cli --tls --cacert $certs/ca.pem --cert $certs/raftinel.pem --key $certs/raftinel-key.pem -p ${REDIS_PORTS[1]} INFO replication

MSG
fi
"$ctl" events --follow &
pids+=($!)
wait
