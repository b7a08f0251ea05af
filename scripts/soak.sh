#!/usr/bin/env bash
# Soak test, outside CI: SOAK_SECS (default 600) of mixed load against each engine in turn
# (ENGINES, default "uring epoll") on 127.0.0.1, sampling the server's resident memory, open
# descriptors, CPU time and open connections every SOAK_EVERY seconds (default 10) into a TSV,
# and ending with one summary line per engine.
#
# The load, all bounded by SOAK_SECS and stopping by itself: wrk keep-alive GETs of the index
# (-t1 -c20, niced), and scripts/soak-mix.py: pipelined bursts with 404s and HEADs, a slow reader
# of a 20 MiB file, resets mid-request, ranges, 304s and 416s, whole big files, malformed heads;
# every answer is checked and unexpected ones are counted.
#
# Usage: scripts/soak.sh [BINARY]   (default: target/release/uring-httpd, built if missing)
# Output: soak-<date>/samples.tsv, the server logs, and the summary on stdout. Needs wrk and
# python3. The machine has 2 cores: expect the load, not the server, to be the limit.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SOAK_SECS:-600}
every=${SOAK_EVERY:-10}
engines=${ENGINES:-uring epoll}
bin=${1:-target/release/uring-httpd}
[ -x "$bin" ] || cargo build --release
command -v wrk >/dev/null || { echo "soak.sh needs wrk (apt-get install wrk)"; exit 2; }

out=${SOAK_OUT:-soak-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
work=$(mktemp -d)
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The site: the demo, a 20 MiB and a 100 KiB file (spliced / sent with sendfile), a dotfile.
cp -r root "$work/site"
head -c $((20 << 20)) /dev/urandom >"$work/site/big.png"
head -c $((100 << 10)) /dev/urandom >"$work/site/medium.png"
echo secret >"$work/site/.hidden"
big_len=$((20 << 20))
medium_len=$((100 << 10))

printf 'engine\tsecs\trss_kib\tfds\tcpu_secs\tconnections_open\trequests_total\n' >"$out/samples.tsv"
ticks=$(getconf CLK_TCK)

sample() { # engine pid port start
    local stat cpu rss fds status open total
    stat=$(cut -d' ' -f14,15 "/proc/$2/stat")
    cpu=$(awk -v t="$ticks" '{ printf "%.2f", ($1 + $2) / t }' <<<"$stat")
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$2/status")
    fds=$(ls "/proc/$2/fd" | wc -l)
    status=$(curl -s --max-time 5 "http://127.0.0.1:$3/status" || true)
    open=$(awk '/^connections_open/ { print $2 }' <<<"$status")
    total=$(awk '/^requests_total/ { print $2 }' <<<"$status")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" $(($(date +%s) - $4)) "$rss" "$fds" "$cpu" \
        "${open:--}" "${total:--}" >>"$out/samples.tsv"
}

for engine in $engines; do
    cat >"$work/uring.toml" <<TOML
[server]
host = "127.0.0.1"
port = 0
workers = 2
engine = "$engine"
status_path = "/status"
[files]
root = "$work/site"
[log]
access = "$work/access-$engine.log"
TOML
    "$bin" --config "$work/uring.toml" 2>"$out/stderr-$engine.log" &
    server=$!
    port=
    for _ in $(seq 100); do
        port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$out/stderr-$engine.log")
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "$engine: server did not start"; cat "$out/stderr-$engine.log"; exit 1; }
    start=$(date +%s)
    sample "$engine" "$server" "$port" "$start"

    nice -n 10 wrk -t1 -c20 -d"${secs}s" "http://127.0.0.1:$port/" >"$out/wrk-$engine.txt" 2>&1 &
    wrk_pid=$!
    python3 scripts/soak-mix.py "$port" "$secs" "$big_len" "$medium_len" >"$out/mix-$engine.json" &
    mix_pid=$!
    while kill -0 "$wrk_pid" 2>/dev/null || kill -0 "$mix_pid" 2>/dev/null; do
        sleep "$every"
        sample "$engine" "$server" "$port" "$start"
    done
    wait "$wrk_pid" || true
    wait "$mix_pid" || true
    # Idle again: keep-alive connections time out (5 s), memory is given back.
    sleep 7
    sample "$engine" "$server" "$port" "$start"
    kill -TERM "$server"
    code=0
    wait "$server" || code=$?
    server=

    wrk_rps=$(awk '/Requests\/sec/ { print $2 }' "$out/wrk-$engine.txt")
    mix=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["counts"]; ok=sum(v for k,v in d.items() if not k.endswith("_unexpected")); bad=sum(v for k,v in d.items() if k.endswith("_unexpected")); print(f"{ok} checked, {bad} unexpected")' "$out/mix-$engine.json")
    case $mix in *" 0 unexpected") ;; *) failed=1 ;; esac
    [ "$code" = 0 ] || failed=1
    awk -F'\t' -v e="$engine" -v secs="$secs" -v code="$code" -v rps="$wrk_rps" -v mix="$mix" '
        $1 == e {
            n++
            if (n == 1) { rss0 = $3; fd0 = $4 }
            if ($3 > rssmax) rssmax = $3
            if ($4 > fdmax) fdmax = $4
            rss1 = $3; fd1 = $4; cpu = $5; req = $7
        }
        END {
            printf "soak %s %ss: %s requests, wrk %s req/s, mix %s; RSS %.1f MB start, %.1f max, %.1f end; fds %d start, %d max, %d end; CPU %.1f s; exit %d\n",
                e, secs, req, rps, mix, rss0 / 1024, rssmax / 1024, rss1 / 1024, fd0, fdmax, fd1, cpu, code
        }' "$out/samples.tsv" | tee -a "$out/summary.txt"
    if grep -q panicked "$out/stderr-$engine.log"; then
        echo "soak $engine: the server panicked, see $out/stderr-$engine.log"
        failed=1
    fi
done
echo "samples: $out/samples.tsv"
# Non-zero when any answer was unexpected, a server panicked or did not exit 0.
exit "${failed:-0}"
