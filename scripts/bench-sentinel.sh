#!/usr/bin/env bash
# Compares SENTINEL get-master-addr-by-name throughput of one Raftinel node
# with a real redis-sentinel, both monitoring the same redis-server master on
# this machine, measured with redis-benchmark in the same run (alternating
# rounds, so both see the same machine load). Every process runs on
# 127.0.0.1 in a temporary folder and is stopped on exit.
#
# It measures twice: one request per round trip (plain), then PIPELINE
# requests per round trip (redis-benchmark -P, default 16), and prints the
# medians and the ratio of each.
#
# BASELINE=REV (a commit, branch or tag) adds a second Raftinel node built
# from that revision, measured in the same alternating rounds, and prints
# its figures and the ratio of this tree's node to it: an A/B of a change
# under the same machine load.
#
# Settings (environment): REQUESTS (default 200000), CLIENTS (50), ROUNDS (3),
# PIPELINE (16), PIPELINE_REQUESTS (1000000: a pipelined round of 200000
# is over too soon to measure),
# and the ports REDIS_PORT, SENTINEL_PORT, RAFTINEL_PORT, RAFT_PORT,
# GRPC_PORT (default: free ports picked now). A taken port is refused.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-200000}
CLIENTS=${CLIENTS:-50}
ROUNDS=${ROUNDS:-3}
PIPELINE=${PIPELINE:-16}
PIPELINE_REQUESTS=${PIPELINE_REQUESTS:-1000000}
NAME=mymaster

for tool in redis-server redis-sentinel redis-cli redis-benchmark go; do
  command -v "$tool" >/dev/null || { echo "bench-sentinel: $tool is not installed (try make redis)" >&2; exit 1; }
done

taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port prints a port nothing listens on and that no earlier call chose.
chosen=()
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 40000))
    if ! taken "$p" && [[ " ${chosen[*]} " != *" $p "* ]]; then
      chosen+=("$p")
      echo "$p"
      return 0
    fi
  done
  echo "bench-sentinel: no free port found" >&2
  return 1
}

REDIS_PORT=${REDIS_PORT:-$(free_port)}; chosen+=("$REDIS_PORT")
SENTINEL_PORT=${SENTINEL_PORT:-$(free_port)}; chosen+=("$SENTINEL_PORT")
RAFTINEL_PORT=${RAFTINEL_PORT:-$(free_port)}; chosen+=("$RAFTINEL_PORT")
RAFT_PORT=${RAFT_PORT:-$(free_port)}; chosen+=("$RAFT_PORT")
GRPC_PORT=${GRPC_PORT:-$(free_port)}; chosen+=("$GRPC_PORT")
BASELINE=${BASELINE:-}
if [ -n "$BASELINE" ]; then
  BASE_PORT=$(free_port); BASE_RAFT_PORT=$(free_port); BASE_GRPC_PORT=$(free_port)
fi
for p in "$REDIS_PORT" "$SENTINEL_PORT" "$RAFTINEL_PORT" "$RAFT_PORT" "$GRPC_PORT"; do
  if taken "$p"; then
    echo "bench-sentinel: port $p on 127.0.0.1 is taken; choose another one" >&2
    exit 1
  fi
done

dir=$(mktemp -d -t raftinel-bench.XXXXXX)
pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup INT TERM EXIT

# wait_reply waits until a command on a port answers want (10 s at most).
wait_reply() {
  local port=$1 want=$2; shift 2
  for _ in $(seq 100); do
    [ "$(redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null | tr '\n' ' ')" = "$want" ] && return 0
    sleep 0.1
  done
  echo "bench-sentinel: port $port does not answer '$*' with '$want'; logs in $dir:" >&2
  tail -n 20 "$dir"/*.log >&2 || true
  return 1
}

go build -o "$dir/coordinator" ./cmd/coordinator
if [ -n "$BASELINE" ]; then
  base_rev=$(git rev-parse --short "$BASELINE^{commit}") || { echo "bench-sentinel: BASELINE=$BASELINE is not a commit" >&2; exit 1; }
  mkdir "$dir/base-src"
  git archive "$base_rev" | tar -x -C "$dir/base-src"
  (cd "$dir/base-src" && go build -o "$dir/coordinator-base" ./cmd/coordinator)
fi

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
  --daemonize no >"$dir/redis.log" 2>&1 &
pids+=($!)
wait_reply "$REDIS_PORT" "PONG " PING

cat >"$dir/sentinel.conf" <<CONF
port $SENTINEL_PORT
bind 127.0.0.1
daemonize no
dir $dir
sentinel monitor $NAME 127.0.0.1 $REDIS_PORT 1
CONF
redis-sentinel "$dir/sentinel.conf" >"$dir/redis-sentinel.log" 2>&1 &
pids+=($!)

# start_node BINARY NAME SENTINEL_PORT RAFT_PORT GRPC_PORT starts a
# single-node cluster and MONITORs the master through its own Sentinel
# endpoint, retried until the node has elected itself and serves it.
want="127.0.0.1 $REDIS_PORT "
start_node() {
  "$1" --id bench --data-dir "$dir/$2" --log-level warn \
    --raft-addr "127.0.0.1:$4" --grpc-addr "127.0.0.1:$5" \
    --sentinel-addr "127.0.0.1:$3" --bootstrap "bench=127.0.0.1:$4" \
    >"$dir/$2.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    redis-cli -h 127.0.0.1 -p "$3" SENTINEL MONITOR "$NAME" 127.0.0.1 "$REDIS_PORT" 1 >/dev/null 2>&1 || true
    [ "$(redis-cli -h 127.0.0.1 -p "$3" SENTINEL get-master-addr-by-name "$NAME" 2>/dev/null | tr '\n' ' ')" = "$want" ] && break
    sleep 0.2
  done
  wait_reply "$3" "$want" SENTINEL get-master-addr-by-name "$NAME"
}
start_node "$dir/coordinator" raftinel "$RAFTINEL_PORT" "$RAFT_PORT" "$GRPC_PORT"
if [ -n "$BASELINE" ]; then
  start_node "$dir/coordinator-base" raftinel-base "$BASE_PORT" "$BASE_RAFT_PORT" "$BASE_GRPC_PORT"
fi
wait_reply "$SENTINEL_PORT" "$want" SENTINEL get-master-addr-by-name "$NAME"

# rps runs redis-benchmark once against port $1 with pipeline depth $2 and
# prints its requests per second.
rps() {
  local out n=$REQUESTS
  [ "$2" -gt 1 ] && n=$PIPELINE_REQUESTS
  out=$(redis-benchmark -h 127.0.0.1 -p "$1" -n "$n" -c "$CLIENTS" -P "$2" -q SENTINEL get-master-addr-by-name "$NAME" 2>&1 | tr '\r' '\n')
  n=$(grep -o '[0-9.]* requests per second' <<<"$out" | tail -n 1 | cut -d' ' -f1)
  if [ -z "$n" ]; then
    echo "bench-sentinel: redis-benchmark on port $1 printed no figure: $out" >&2
    return 1
  fi
  echo "$n"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "== environment"
echo "redis-server:  $(redis-server --version)"
echo "redis-sentinel: $(redis-sentinel --version)"
echo "redis-benchmark: $(redis-benchmark --version)"
echo "$(go version), nproc $(nproc), $(uname -sm)"
grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/^model name\s*: /cpu: /' || true
echo "raftinel: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (modified)')"
[ -n "$BASELINE" ] && echo "baseline: $base_rev ($BASELINE)"

# measure LABEL DEPTH: ROUNDS alternating rounds at pipeline depth DEPTH;
# leaves the ratio of the medians in the variable ratio_LABEL.
summary=()
measure() {
  local label=$1 depth=$2 n=$REQUESTS
  [ "$depth" -gt 1 ] && n=$PIPELINE_REQUESTS
  echo
  echo "== $label: redis-benchmark -h 127.0.0.1 -p PORT -n $n -c $CLIENTS -P $depth -q SENTINEL get-master-addr-by-name $NAME, $ROUNDS alternating rounds"
  local ours=() theirs=() base=() round r s b
  for round in $(seq "$ROUNDS"); do
    r=$(rps "$RAFTINEL_PORT" "$depth"); ours+=("$r")
    s=$(rps "$SENTINEL_PORT" "$depth"); theirs+=("$s")
    if [ -n "$BASELINE" ]; then
      b=$(rps "$BASE_PORT" "$depth"); base+=("$b")
      printf 'round %d: raftinel (port %s) %s rps, redis-sentinel (port %s) %s rps, baseline (port %s) %s rps\n' "$round" "$RAFTINEL_PORT" "$r" "$SENTINEL_PORT" "$s" "$BASE_PORT" "$b"
    else
      printf 'round %d: raftinel (port %s) %s rps, redis-sentinel (port %s) %s rps\n' "$round" "$RAFTINEL_PORT" "$r" "$SENTINEL_PORT" "$s"
    fi
  done
  local mo mt ratio mb bratio base_ratio
  mo=$(median "${ours[@]}")
  mt=$(median "${theirs[@]}")
  ratio=$(awk -v a="$mo" -v b="$mt" 'BEGIN {printf "%.2f", a / b}')
  printf 'median raftinel:       %s requests per second\n' "$mo"
  printf 'median redis-sentinel: %s requests per second\n' "$mt"
  printf 'ratio raftinel / redis-sentinel: %s\n' "$ratio"
  if [ -n "$BASELINE" ]; then
    mb=$(median "${base[@]}")
    bratio=$(awk -v a="$mo" -v b="$mb" 'BEGIN {printf "%.2f", a / b}')
    base_ratio=$(awk -v a="$mb" -v b="$mt" 'BEGIN {printf "%.2f", a / b}')
    printf 'median baseline:       %s requests per second (%s / redis-sentinel)\n' "$mb" "$base_ratio"
    printf 'ratio raftinel / baseline: %s\n' "$bratio"
    summary+=("$(printf '%-22s raftinel %10s rps, redis-sentinel %10s rps, ratio %s; baseline %10s rps, ratio %s, raftinel / baseline %s' "$label (-P $depth)" "$mo" "$mt" "$ratio" "$mb" "$base_ratio" "$bratio")")
  else
    summary+=("$(printf '%-22s raftinel %10s rps, redis-sentinel %10s rps, ratio %s' "$label (-P $depth)" "$mo" "$mt" "$ratio")")
  fi
}

measure plain 1
measure pipelined "$PIPELINE"
echo
echo "== summary (medians)"
printf '%s\n' "${summary[@]}"
