#!/usr/bin/env bash
# abc.sh ROUNDS SECS CONNS 'name=command with @P' ...: server CPU µs/request of each command,
# alternating round by round (see README.md). FILE picks the file (default index.html). Ends with
# each command's medians (server CPU, its user part, the whole machine's busy CPU) and the median
# of its per-round ratio to the first command: the host's speed can shift by 20% between minutes,
# and a ratio within one round cancels that shift.
set -u
. "$(dirname "$0")/common.sh"
ROUNDS=$1; SECS=$2; CONNS=$3; shift 3
tck=$(getconf CLK_TCK)
rows=$AB_DIR/abc-rows.txt; : > "$rows"
# Busy ticks of the whole machine (every CPU; all but idle and iowait): server, wrk, the kernel
# between them and anything else running (why: README.md, "Read `machine` beside `cpu`").
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
# utime and stime of process $1, in ticks; nothing (and no error) once it has exited, which the
# check after the run reports.
ticks() { awk '{print $14, $15}' "/proc/$1/stat" 2>/dev/null; }
# Whether process $1 still runs: an exited child stays a zombie until reaped, and `kill -0`
# still finds it.
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null); [ -n "$st" ] && [ "${st#Z}" = "$st" ]; }
for r in $(seq 1 "$ROUNDS"); do
  for spec in "$@"; do
    name=${spec%%=*}; cmd=${spec#*=}
    port=$((20000 + RANDOM % 1000))
    cmd=${cmd//@P/$port}
    nice -n -19 taskset -c 1 bash -c "exec $cmd" >/dev/null 2>"$AB_DIR/$name.err" & pid=$!
    wait_port "$port" || { echo "$name: not listening on $port (see $AB_DIR/$name.err)"; kill $pid; continue; }
    url=http://127.0.0.1:$port/${FILE:-index.html}
    nice -n -19 taskset -c 0 wrk -t1 -c"$CONNS" -d1s "$url" >/dev/null
    read -r u0 s0 < <(ticks $pid)
    m0=$(busy)
    out=$(nice -n -19 taskset -c 0 wrk -t1 -c"$CONNS" -d"${SECS}s" "$url")
    m1=$(busy)
    read -r u1 s1 < <(ticks $pid)
    reqs=$(echo "$out" | awk '/requests in/{print $1}')
    if [ -z "$reqs" ] || [ -z "${u0:-}" ] || [ -z "${u1:-}" ] || ! alive $pid; then
      # The server died or wrk failed: a row of empty figures would count as 0 in the medians.
      echo "$name c=$CONNS round=$r: no figures (see $AB_DIR/$name.err); the round leaves it out"
      kill $pid 2>/dev/null; wait $pid 2>/dev/null; continue
    fi
    echo "$name c=$CONNS round=$r reqs=$reqs cpu=$(echo "scale=3; ($u1-$u0+$s1-$s0)*1000000/$tck/$reqs" | bc) user=$(echo "scale=3; ($u1-$u0)*1000000/$tck/$reqs" | bc) machine=$(echo "scale=3; ($m1-$m0)*1000000/$tck/$reqs" | bc) rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')" | tee -a "$rows"
    kill $pid; wait $pid 2>/dev/null
  done
done
# Summary: medians per command, and the median of cpu ÷ the first command's cpu in the same round
# (summary.awk -v base=NAME divides by another).
awk -f "$(dirname "$0")/summary.awk" "$rows"
