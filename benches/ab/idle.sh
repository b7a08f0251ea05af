#!/usr/bin/env bash
# idle.sh BIN ENGINE [N]: server RSS per idle keep-alive connection (N = 10,000 by default).
set -u
. "$(dirname "$0")/common.sh"
BIN=$1; ENGINE=$2; N=${3:-10000}; port=$((19000 + RANDOM % 500))
cmd=$("$(dirname "$0")/uring.sh" "$BIN" "$ENGINE" $'[limits]\nkeep_alive_timeout_secs = 60'); cmd=${cmd//@P/$port}
prlimit --nofile=$((N + 1000)):$((N + 1000)) bash -c "exec $cmd" & pid=$!
wait_port "$port" || { echo "not listening"; kill $pid; exit 1; }
timeout 60 python3 "$(dirname "$0")/idle.py" "$port" "$pid" "$N"
kill $pid; wait $pid 2>/dev/null
