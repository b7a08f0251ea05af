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
    m0=$(busy)
    out=$(nice -n -19 taskset -c 0 wrk -t1 -c"$CONNS" -d"${SECS}s" "$url")
    m1=$(busy)
    read -r u1 s1 < <(awk '{print $14, $15}' /proc/$pid/stat)
    reqs=$(echo "$out" | awk '/requests in/{print $1}')
    if [ -z "$reqs" ] || ! kill -0 $pid 2>/dev/null; then
      # The server died or wrk failed: a row of empty figures would count as 0 in the medians.
      echo "$name c=$CONNS round=$r: no figures (see $AB_DIR/$name.err); the round leaves it out"
      kill $pid 2>/dev/null; wait $pid 2>/dev/null; continue
    fi
    echo "$name c=$CONNS round=$r reqs=$reqs cpu=$(echo "scale=3; ($u1-$u0+$s1-$s0)*1000000/$tck/$reqs" | bc) user=$(echo "scale=3; ($u1-$u0)*1000000/$tck/$reqs" | bc) machine=$(echo "scale=3; ($m1-$m0)*1000000/$tck/$reqs" | bc) rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')" | tee -a "$rows"
    kill $pid; wait $pid 2>/dev/null
  done
done
# Summary: medians per command, and the median of cpu ÷ the first command's cpu in the same round.
awk '
function median(list,   a, n, i, j, t) {
  n = split(list, a, " ")
  for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  name = $1; if (!(name in seen)) { seen[name] = 1; order[++k] = name }
  cpu[name] = cpu[name] " " v["cpu"]; user[name] = user[name] " " v["user"]; rps[name] = rps[name] " " v["rps"]
  machine[name] = machine[name] " " v["machine"]
  round_cpu[name, v["round"]] = v["cpu"]; round_machine[name, v["round"]] = v["machine"]
  rounds[v["round"]] = 1 }
END {
  for (i = 1; i <= k; i++) {
    n = order[i]; ratios = ""; mratios = ""
    for (r in rounds) if ((n, r) in round_cpu && (order[1], r) in round_cpu) {
      ratios = ratios " " round_cpu[n, r] / round_cpu[order[1], r]
      if (round_machine[order[1], r] > 0)
        mratios = mratios " " round_machine[n, r] / round_machine[order[1], r]
    }
    printf "median %s: cpu=%.3f user=%.3f machine=%.3f rps=%.0f; cpu ÷ %s in the same round: %.3f, machine: %.3f\n",
      n, median(cpu[n]), median(user[n]), median(machine[n]), median(rps[n]), order[1], median(ratios),
      median(mratios)
  }
}' "$rows"
