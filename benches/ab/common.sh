# Sourced by the A/B scripts: the work directory and its files.
AB_DIR=${AB_DIR:-/tmp/uring-ab}
SITE=$AB_DIR/site
mkdir -p "$SITE"
[ -f "$SITE/index.html" ] || head -c 2027 /dev/urandom | base64 -w0 | head -c 2027 > "$SITE/index.html"
[ -f "$SITE/100k.txt" ] || head -c 102400 /dev/urandom | base64 -w0 | head -c 102400 > "$SITE/100k.txt"
[ -f "$SITE/10m.txt" ] || head -c 10485760 /dev/urandom > "$SITE/10m.txt"
# Waits until 127.0.0.1:$1 accepts (at most 5 s).
wait_port() {
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
# fill TEMPLATE OUT SED-ARGS...: writes TEMPLATE (a lab configuration template with {{NAME}}
# placeholders) to OUT through sed with SED-ARGS, and fails when a placeholder is left: one the
# template gained and the caller does not fill would reach the server as text.
fill() {
    local template=$1 out=$2; shift 2
    sed "$@" "$template" > "$out"
    if grep -n '{{' "$out" >&2; then echo "$(basename "$0"): unfilled placeholder in $out" >&2; return 1; fi
}
