#!/usr/bin/env bash
# abc.sh ROUNDS SECS CONNS 'name=command with @P' ...: server CPU µs/request of each command,
# alternating round by round (see README.md). FILE picks the file (default index.html).
set -u
. "$(dirname "$0")/common.sh"
ROUNDS=$1; SECS=$2; CONNS=$3; shift 3
tck=$(getconf CLK_TCK)
for r in $(seq 1 "$ROUNDS"); do
  for spec in "$@"; do
    name=${spec%%=*}; cmd=${spec#*=}
    port=$((20000 + RANDOM % 1000))
    cmd=${cmd//@P/$port}
    nice -n -19 taskset -c 1 bash -c "exec $cmd" >/dev/null 2>"$AB_DIR/$name.err" & pid=$!
    wait_port "$port" || { echo "$name: not listening on $port (see $AB_DIR/$name.err)"; kill $pid; continue; }
    url=http://127.0.0.1:$port/${FILE:-index.html}
    nice -n -19 taskset -c 0 wrk -t1 -c"$CONNS" -d1s "$url" >/dev/null
    read -r u0 s0 < <(awk '{print $14, $15}' /proc/$pid/stat)
    out=$(nice -n -19 taskset -c 0 wrk -t1 -c"$CONNS" -d"${SECS}s" "$url")
    read -r u1 s1 < <(awk '{print $14, $15}' /proc/$pid/stat)
    reqs=$(echo "$out" | awk '/requests in/{print $1}')
    echo "$name c=$CONNS round=$r reqs=$reqs cpu=$(echo "scale=3; ($u1-$u0+$s1-$s0)*1000000/$tck/$reqs" | bc) user=$(echo "scale=3; ($u1-$u0)*1000000/$tck/$reqs" | bc) rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')"
    kill $pid; wait $pid 2>/dev/null
  done
done
