#!/usr/bin/env bash
# sys.sh ROUNDS CONNS name=BIN ...: untraced system calls per request of the uring engine on the
# 2 KiB file (perf stat over 3 s of wrk load), alternating binaries.
set -u
. "$(dirname "$0")/common.sh"
ROUNDS=$1; CONNS=$2; shift 2
for r in $(seq 1 "$ROUNDS"); do for spec in "$@"; do
  name=${spec%%=*}; bin=${spec#*=}; port=$((21000 + RANDOM % 1000))
  cmd=$("$(dirname "$0")/uring.sh" "$bin" uring); cmd=${cmd//@P/$port}
  taskset -c 1 bash -c "exec $cmd" 2>/dev/null & pid=$!
  wait_port "$port" || { echo "$name: not listening"; kill $pid; continue; }
  taskset -c 0 wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$port/index.html" >/dev/null
  taskset -c 0 wrk -t1 -c"$CONNS" -d4s "http://127.0.0.1:$port/index.html" > "$AB_DIR/sys-wrk.txt" &
  w=$!; sleep 0.5
  perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_io_uring_enter \
      -p $pid -o "$AB_DIR/sys-perf.txt" -- sleep 3
  wait $w; kill $pid; wait $pid 2>/dev/null
  rps=$(awk '/Requests\/sec/{print $2}' "$AB_DIR/sys-wrk.txt")
  awk -v n="$name" -v r="$rps" '/raw_syscalls|epoll_wait|io_uring_enter/{gsub(",","",$1); printf "%s %s per_req=%.3f\n", n, $2, $1/(r*3)}' "$AB_DIR/sys-perf.txt"
done; done
