#!/usr/bin/env bash
# Compares SENTINEL get-master-addr-by-name throughput of one Raftinel node
# with a real redis-sentinel, both monitoring the same redis-server master on
# this machine, measured with redis-benchmark in the same run (alternating
# rounds, so both see the same machine load). Every process runs on
# 127.0.0.1 in a temporary folder and is stopped on exit.
#
# It measures twice: one request per round trip (plain), then PIPELINE
# requests per round trip (redis-benchmark -P, default 16), and prints the
# medians and the ratio of each, and the CPU time each server used per
# request (user + system, from /proc): on a loaded machine the requests per
# second swing with what else runs, the CPU per request much less.
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
declare -A pid_of  # port -> the pid of the server measured on it
pid_of[$SENTINEL_PORT]=$!

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
  pid_of[$3]=$!
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

# cpu_ticks PID prints the user + system CPU time PID has used, in clock
# ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)

# rps runs redis-benchmark once against port $1 with pipeline depth $2 and
# prints its requests per second and the server's CPU microseconds per
# request.
rps() {
  local out n=$REQUESTS t0 t1 cpu
  [ "$2" -gt 1 ] && n=$PIPELINE_REQUESTS
  t0=$(cpu_ticks "${pid_of[$1]}")
  out=$(redis-benchmark -h 127.0.0.1 -p "$1" -n "$n" -c "$CLIENTS" -P "$2" -q SENTINEL get-master-addr-by-name "$NAME" 2>&1 | tr '\r' '\n')
  n=$(grep -o '[0-9.]* requests per second' <<<"$out" | tail -n 1 | cut -d' ' -f1)
  if [ -z "$n" ]; then
    echo "bench-sentinel: redis-benchmark on port $1 printed no figure: $out" >&2
    return 1
  fi
  t1=$(cpu_ticks "${pid_of[$1]}")
  [ "$2" -gt 1 ] && cpu=$PIPELINE_REQUESTS || cpu=$REQUESTS
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$cpu" 'BEGIN {printf "%.2f", d * 1e6 / hz / n}')
  echo "$n $cpu"
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
  local ours=() theirs=() base=() ours_cpu=() theirs_cpu=() base_cpu=() round r rc s sc b bc
  for round in $(seq "$ROUNDS"); do
    read -r r rc < <(rps "$RAFTINEL_PORT" "$depth"); ours+=("$r"); ours_cpu+=("$rc")
    read -r s sc < <(rps "$SENTINEL_PORT" "$depth"); theirs+=("$s"); theirs_cpu+=("$sc")
    if [ -n "$BASELINE" ]; then
      read -r b bc < <(rps "$BASE_PORT" "$depth"); base+=("$b"); base_cpu+=("$bc")
      printf 'round %d: raftinel (port %s) %s rps %s us CPU/req, redis-sentinel (port %s) %s rps %s us, baseline (port %s) %s rps %s us\n' "$round" "$RAFTINEL_PORT" "$r" "$rc" "$SENTINEL_PORT" "$s" "$sc" "$BASE_PORT" "$b" "$bc"
    else
      printf 'round %d: raftinel (port %s) %s rps %s us CPU/req, redis-sentinel (port %s) %s rps %s us\n' "$round" "$RAFTINEL_PORT" "$r" "$rc" "$SENTINEL_PORT" "$s" "$sc"
    fi
  done
  if [ -z "${r:-}" ] || [ -z "${s:-}" ]; then
    echo "bench-sentinel: a round printed no figure" >&2
    exit 1
  fi
  local mo mt ratio mb bratio base_ratio co ct cb
  mo=$(median "${ours[@]}"); co=$(median "${ours_cpu[@]}")
  mt=$(median "${theirs[@]}"); ct=$(median "${theirs_cpu[@]}")
  ratio=$(awk -v a="$mo" -v b="$mt" 'BEGIN {printf "%.2f", a / b}')
  printf 'median raftinel:       %s requests per second, %s us CPU per request\n' "$mo" "$co"
  printf 'median redis-sentinel: %s requests per second, %s us CPU per request\n' "$mt" "$ct"
  printf 'ratio raftinel / redis-sentinel: %s\n' "$ratio"
  if [ -n "$BASELINE" ]; then
    mb=$(median "${base[@]}"); cb=$(median "${base_cpu[@]}")
    bratio=$(awk -v a="$mo" -v b="$mb" 'BEGIN {printf "%.2f", a / b}')
    base_ratio=$(awk -v a="$mb" -v b="$mt" 'BEGIN {printf "%.2f", a / b}')
    printf 'median baseline:       %s requests per second, %s us CPU per request (%s / redis-sentinel)\n' "$mb" "$cb" "$base_ratio"
    printf 'ratio raftinel / baseline: %s\n' "$bratio"
    summary+=("$(printf '%-18s raftinel %10s rps %5s us/req, redis-sentinel %10s rps %5s us/req, ratio %s; baseline %10s rps %5s us/req, ratio %s, raftinel / baseline %s' "$label (-P $depth)" "$mo" "$co" "$mt" "$ct" "$ratio" "$mb" "$cb" "$base_ratio" "$bratio")")
  else
    summary+=("$(printf '%-18s raftinel %10s rps %5s us/req, redis-sentinel %10s rps %5s us/req, ratio %s' "$label (-P $depth)" "$mo" "$co" "$mt" "$ct" "$ratio")")
  fi
}

measure plain 1
measure pipelined "$PIPELINE"
echo
echo "== summary (medians)"
printf '%s\n' "${summary[@]}"
