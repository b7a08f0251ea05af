#!/usr/bin/env bash
# Runs each fuzz target in turn for FUZZ_SECS seconds (default 620), at the lowest priority and
# with one job, growing corpus/<target>, then minimizes each corpus (a libFuzzer merge into an
# empty directory, as `cargo fuzz cmin` does, here a set-cover merge over coverage edges only, so
# the committed corpus stays at a few hundred small files with the same coverage). The targets are built once at the start and run
# from a copy, so editing the crate meanwhile changes nothing. Needs the nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`). Logs go to fuzz/logs/.
set -euo pipefail
cd "$(dirname "$0")"
secs=${FUZZ_SECS:-620}
targets=${TARGETS:-parse_request resolve_path exchange}
mkdir -p logs/bin
nice -n 19 cargo +nightly fuzz build -O >logs/build.log 2>&1
for t in $targets; do
    cp "target/x86_64-unknown-linux-gnu/release/$t" "logs/bin/$t"
done
for t in $targets; do
    echo "== $t for ${secs}s"
    mkdir -p "artifacts/$t"
    if ! nice -n 19 "logs/bin/$t" -artifact_prefix="artifacts/$t/" -jobs=1 -workers=1 \
        -max_total_time="$secs" -max_len=4096 "corpus/$t" >"logs/$t.log" 2>&1; then
        echo "$t: crashed, see fuzz/logs/$t.log and fuzz/artifacts/$t/"
    fi
    cat fuzz-0.log >>"logs/$t.log" 2>/dev/null && rm -f fuzz-0.log
    grep -E "Done [0-9]+ runs|DONE" "logs/$t.log" | tail -2
    rm -rf "logs/min-$t" && mkdir "logs/min-$t"
    nice -n 19 "logs/bin/$t" -set_cover_merge=1 -use_counters=0 -use_cmp=0 "logs/min-$t" \
        "corpus/$t" >>"logs/$t.log" 2>&1
    rm -rf "corpus/$t" && mv "logs/min-$t" "corpus/$t"
    echo "$t: corpus minimized to $(ls "corpus/$t" | wc -l) inputs, $(du -sh --apparent-size "corpus/$t" | cut -f1)"
done
