#!/usr/bin/env bash
# docker/smoke.sh: builds the image with docker/Dockerfile and checks it for real, printing one
# "ok" or "FAIL" line per check; exits non-zero when any check fails. Too slow for CI (a release
# build inside a container, several containers, health checks every 10 s): run it by hand, as
# root, on a Linux machine:
#
#   docker/smoke.sh
#
# What it needs, and does when missing:
# - A Docker daemon. If none answers, it starts `dockerd --bridge=none --iptables=false` itself
#   (installing Debian's docker.io first if there is no dockerd) and stops that daemon, by its PID,
#   at the end. The classic builder is used (DOCKER_BUILDKIT=0): old daemons have no BuildKit.
# - The base images named by the Dockerfile's ARGs. When they cannot be pulled (no registry
#   reachable), it builds both from Debian packages with debootstrap (SMOKE_SUITE, default trixie,
#   whose rustc/cargo 1.85 are new enough for this crate; bookworm's 1.63 is not): a builder with
#   rustc, cargo and gcc, and a distroless-like runtime made of the same release's libc6 and
#   libgcc-s1 files plus a nonroot user (65532). Both are cached as images between runs.
# - HTTPS from the build container to crates.io is verified against the host's CA bundle: the
#   script layers /etc/ssl/certs/ca-certificates.crt onto the builder base it passes in (the
#   Dockerfile itself stays standard).
# Containers run with --network host and listen on 127.0.0.1 only; every request goes to
# 127.0.0.1. Every wait is bounded.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
IMAGE=${SMOKE_IMAGE:-uring-httpd:smoke}
WORK=${SMOKE_WORK:-/var/tmp/uring-httpd-smoke}
SUITE=${SMOKE_SUITE:-trixie}
MIRROR=${SMOKE_MIRROR:-http://deb.debian.org/debian}
GRACE=20 # docker stop's grace period; the server's shutdown_timeout_secs is 10
export DOCKER_BUILDKIT=0

PASS=0
FAILED=0
ok() { PASS=$((PASS + 1)); echo "ok   - $*"; }
bad() { FAILED=$((FAILED + 1)); echo "FAIL - $*"; }
say() { echo "== $*"; }
die() { echo "smoke: $*" >&2; exit 2; }

mkdir -p "$WORK" || die "cannot create $WORK"
TMP=$(mktemp -d)
DOCKERD_PID=
CONTAINERS=()

cleanup() {
    for c in "${CONTAINERS[@]}"; do docker rm -f "$c" >/dev/null 2>&1; done
    if [ -n "$DOCKERD_PID" ]; then
        kill "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
        echo "== stopped the dockerd this script started (pid $DOCKERD_PID)"
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || die "run as root (it may start dockerd and run debootstrap)"

apt_install() {
    [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq >/dev/null && APT_UPDATED=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ---------------------------------------------------------------- the daemon
if docker info >/dev/null 2>&1; then
    say "using the running Docker daemon"
else
    command -v dockerd >/dev/null || apt_install docker.io || die "cannot install docker.io"
    dockerd --bridge=none --iptables=false >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || die "dockerd did not come up; see $WORK/dockerd.log"
    say "started dockerd --bridge=none --iptables=false (pid $DOCKERD_PID)"
fi
say "daemon $(docker version -f '{{.Server.Version}}'), client $(docker version -f '{{.Client.Version}}')"

# ---------------------------------------------------------------- base images
BUILDER=$(sed -n 's/^ARG BUILDER_IMAGE=//p' "$HERE/Dockerfile")
RUNTIME=$(sed -n 's/^ARG RUNTIME_IMAGE=//p' "$HERE/Dockerfile")
if timeout 120 docker pull -q "$BUILDER" >/dev/null 2>&1 &&
    timeout 120 docker pull -q "$RUNTIME" >/dev/null 2>&1; then
    say "pulled $BUILDER and $RUNTIME"
else
    say "cannot pull $BUILDER / $RUNTIME: building the bases from Debian $SUITE packages"
    BUILDER=uring-httpd-base/rust:$SUITE
    RUNTIME=uring-httpd-base/cc:$SUITE
    ROOTFS=$WORK/$SUITE-rust
    if ! docker image inspect "$BUILDER" >/dev/null 2>&1 ||
        ! docker image inspect "$RUNTIME" >/dev/null 2>&1; then
        command -v debootstrap >/dev/null || apt_install debootstrap || die "cannot install debootstrap"
        if [ ! -x "$ROOTFS/usr/bin/cargo" ]; then
            rm -rf "$ROOTFS"
            say "debootstrap $SUITE (minbase + rustc cargo gcc) into $ROOTFS"
            debootstrap --variant=minbase --include=ca-certificates,gcc,libc6-dev,rustc,cargo \
                "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
                die "debootstrap failed; see $WORK/debootstrap.log"
            chroot "$ROOTFS" apt-get clean
        fi
        tar -C "$ROOTFS" -c . | docker import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["/bin/bash"]' - "$BUILDER" >/dev/null || die "docker import $BUILDER failed"
        # The runtime: what distroless cc holds that this binary uses, from the same release as
        # the builder (glibc's and libgcc's files, os-release), and a nonroot user.
        CC=$TMP/cc
        mkdir -p "$CC/etc" "$CC/tmp" "$CC/home/nonroot"
        chroot "$ROOTFS" dpkg -L libc6 libgcc-s1 |
            grep -v -E '^/usr/share/(doc|man|lintian|info|bug|common-licenses)' | sort -u |
            sed 's|^/|./|' >"$TMP/cc.list"
        (cd "$ROOTFS" && tar -cf - --no-recursion -T "$TMP/cc.list" ./bin ./lib ./lib64 ./sbin \
            ./etc/os-release ./usr/lib/os-release) | tar -C "$CC" -xf - || die "cannot assemble the runtime base"
        printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$CC/etc/passwd"
        printf 'root:x:0:\nnonroot:x:65532:\n' >"$CC/etc/group"
        chmod 1777 "$CC/tmp"
        chown 65532:65532 "$CC/home/nonroot"
        tar -C "$CC" -c . | docker import \
            --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
            --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' \
            - "$RUNTIME" >/dev/null || die "docker import $RUNTIME failed"
    fi
    say "bases: $BUILDER ($(docker run --rm "$BUILDER" rustc --version)), $RUNTIME"
fi

# The builder, trusting the host's certificate authorities for crates.io.
mkdir -p "$TMP/ca"
cp /etc/ssl/certs/ca-certificates.crt "$TMP/ca/host-ca.crt" || die "no /etc/ssl/certs/ca-certificates.crt on the host"
printf 'FROM %s\nCOPY host-ca.crt /usr/local/share/host-ca/ca.crt\nENV CARGO_HTTP_CAINFO=/usr/local/share/host-ca/ca.crt SSL_CERT_FILE=/usr/local/share/host-ca/ca.crt\n' \
    "$BUILDER" >"$TMP/ca/Dockerfile"
docker build -q -t uring-httpd-smoke/builder-host-ca "$TMP/ca" >/dev/null 2>&1 || die "cannot layer the CA bundle onto $BUILDER"

# ---------------------------------------------------------------- the build
say "docker build -f docker/Dockerfile (classic builder, log in $WORK/build.log)"
build() { # context tag log
    docker build --network host -f "$1/docker/Dockerfile" \
        --build-arg BUILDER_IMAGE=uring-httpd-smoke/builder-host-ca \
        --build-arg RUNTIME_IMAGE="$RUNTIME" -t "$2" "$1" >"$3" 2>&1
}
START=$(date +%s)
if build "$REPO" "$IMAGE" "$WORK/build.log"; then
    ok "image $IMAGE builds ($(($(date +%s) - START)) s)"
else
    bad "image $IMAGE builds"
    tail -30 "$WORK/build.log"
    exit 1
fi
SIZE=$(docker image inspect -f '{{.Size}}' "$IMAGE")
MIB=$(awk -v s="$SIZE" 'BEGIN { printf "%.1f", s / 1048576 }')
if [ "$SIZE" -le $((30 * 1048576)) ]; then ok "image size $MIB MiB (<= 30 MiB)"; else bad "image size $MIB MiB (> 30 MiB)"; fi

# A change to the source must reuse the dependency layer: rebuild from a copy with one edit.
CTX=$TMP/ctx
mkdir -p "$CTX/docker"
cp -r "$REPO/Cargo.toml" "$REPO/Cargo.lock" "$REPO/src" "$REPO/root" "$REPO/.dockerignore" "$CTX/"
cp "$HERE/Dockerfile" "$HERE/uring.toml" "$CTX/docker/"
echo "// smoke: an edit at $(date +%s.%N)" >>"$CTX/src/main.rs"
START=$(date +%s)
if build "$CTX" uring-httpd:smoke-edit "$WORK/build-edit.log"; then
    # The first RUN (dependencies) must come from the cache, the second (the crate) must not.
    CACHED=$(grep -c -- '---> Using cache' "$WORK/build-edit.log")
    COMPILED=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/build-edit.log" | grep -c '^ *Compiling ')
    DEPS=$(awk '/^Step .* RUN mkdir -p src/ { getline; print; exit }' "$WORK/build-edit.log")
    if [[ $DEPS == *"Using cache"* ]] && [ "$COMPILED" = 1 ]; then
        ok "after a source edit the dependency layer is reused: $COMPILED crate compiled, $CACHED cached steps ($(($(date +%s) - START)) s)"
    else
        bad "after a source edit the dependency layer is reused ($COMPILED crates compiled, $CACHED cached steps)"
    fi
    docker rmi uring-httpd:smoke-edit >/dev/null 2>&1
else
    bad "rebuild after a source edit (see $WORK/build-edit.log)"
fi

# ---------------------------------------------------------------- helpers
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
get() { curl -sS --noproxy '*' --max-time 5 -o "$2" -w '%{http_code}' "http://127.0.0.1:$1"; }
run() { # name, docker run args...
    local name=$1
    shift
    docker rm -f "$name" >/dev/null 2>&1
    CONTAINERS+=("$name")
    docker run -d --name "$name" --network host --read-only --cap-drop ALL "$@" >/dev/null
}
# Waits up to 20 s for the listening line (or the container's exit); prints what it said on stderr.
listening() {
    for _ in $(seq 1 200); do
        docker logs "$1" 2>&1 >/dev/null | grep -q 'listening on http://' && break
        [ "$(docker inspect -f '{{.State.Running}}' "$1")" = true ] || break
        sleep 0.1
    done
    docker logs "$1" 2>&1 >/dev/null
}
# Waits up to 45 s for the image's own HEALTHCHECK (every 10 s) to report healthy.
healthy() {
    local s=
    for _ in $(seq 1 90); do
        s=$(docker inspect -f '{{.State.Health.Status}}' "$1")
        [ "$s" = healthy ] && return 0
        sleep 0.5
    done
    echo "   health: $s; last probe: $(last_probe "$1")"
    return 1
}
last_probe() { docker inspect -f '{{range .State.Health.Log}}{{.Output}}{{end}}' "$1" | grep -v '^$' | tail -1; }

PROFILE=$HERE/seccomp-io_uring.json
# Docker 25 and newer refuse io_uring by default; this daemon's default profile may not, so the
# fallback is shown under the project's profile with the three io_uring calls taken out.
DENY=$TMP/seccomp-no-io_uring.json
python3 - "$PROFILE" "$DENY" <<'EOF' || die "cannot derive the profile without io_uring"
import json, sys
p = json.load(open(sys.argv[1]))
for rule in p["syscalls"]:
    rule["names"] = [n for n in rule["names"] if not n.startswith("io_uring_")]
p["syscalls"] = [r for r in p["syscalls"] if r["names"]]
json.dump(p, open(sys.argv[2], "w"), indent="\t")
EOF

# ---------------------------------------------------------------- 1: the project's profile
say "container 1: --security-opt seccomp=docker/seccomp-io_uring.json, port moved by URING_HTTPD_PORT"
P1=$(free_port)
run uh-smoke-uring --security-opt seccomp="$PROFILE" -e URING_HTTPD_HOST=127.0.0.1 -e URING_HTTPD_PORT="$P1" "$IMAGE"
ERR=$(listening uh-smoke-uring)
echo "$ERR" | sed 's/^/   | /'
if echo "$ERR" | grep -q "listening on http://127.0.0.1:$P1/ (engine uring," && ! echo "$ERR" | grep -q WARN; then
    ok "engine uring under the project's seccomp profile, on the port from URING_HTTPD_PORT"
else
    bad "engine uring under the project's seccomp profile"
fi

USER_CFG=$(docker image inspect -f '{{.Config.User}}' "$IMAGE")
PID=$(docker inspect -f '{{.State.Pid}}' uh-smoke-uring)
UIDS=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$PID/status" 2>/dev/null)
if [ "$USER_CFG" = 65532:65532 ] && [ "$UIDS" = "65532 65532 65532 65532" ]; then
    ok "runs as non-root: image USER $USER_CFG, process uids $UIDS"
else
    bad "runs as non-root: image USER '$USER_CFG', process uids '$UIDS'"
fi

FILES=0
MISMATCH=()
while IFS= read -r -d '' f; do
    rel=${f#"$REPO/root/"}
    code=$(get "$P1/$rel" "$TMP/body")
    case $rel in
    *.jpg) [ "$code" = 403 ] || MISMATCH+=("$rel: $code, expected 403 (jpg is not an allowed extension)") ;;
    *) if [ "$code" = 200 ] && cmp -s "$TMP/body" "$f"; then FILES=$((FILES + 1)); else MISMATCH+=("$rel: $code"); fi ;;
    esac
done < <(find "$REPO/root" -type f -print0 | sort -z)
code=$(get "$P1/" "$TMP/body")
[ "$code" = 200 ] && cmp -s "$TMP/body" "$REPO/root/index.html" || MISMATCH+=("/: $code")
if [ ${#MISMATCH[@]} = 0 ]; then
    ok "serves the demo site byte-exact: / and $FILES files identical to root/, the .jpg refused with 403"
else
    bad "serves the demo site byte-exact: ${MISMATCH[*]}"
fi

START=$(date +%s)
if healthy uh-smoke-uring; then
    ok "HEALTHCHECK (uring-httpd probe) turns healthy on the moved port after $(($(date +%s) - START)) s: $(last_probe uh-smoke-uring)"
else
    bad "HEALTHCHECK turns healthy"
fi

START=$(date +%s.%N)
docker stop -t "$GRACE" uh-smoke-uring >/dev/null
SECS=$(awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
CODE=$(docker inspect -f '{{.State.ExitCode}}' uh-smoke-uring)
OUT=$(docker logs uh-smoke-uring 2>/dev/null)
ACCESS=$(echo "$OUT" | grep -c -E '^[0-9T:.-]+Z 127\.0\.0\.1 /[^ ]* [0-9]{3} GET [0-9]+ [0-9]+[mu]?s$')
MISSING=0
for rel in index.html style.css images/logo.png sub/index.html images/photo.jpg; do
    echo "$OUT" | grep -q " /$rel [0-9]* GET " || MISSING=$((MISSING + 1))
done
if [ "$CODE" = 0 ] && awk -v s="$SECS" -v g="$GRACE" 'BEGIN { exit !(s < g) }' && [ "$MISSING" = 0 ] &&
    docker logs uh-smoke-uring 2>&1 >/dev/null | grep -q 'SIGTERM: finishing in-flight responses'; then
    ok "docker stop: exit 0 after $SECS s (grace ${GRACE} s), $ACCESS access lines on stdout"
else
    bad "docker stop: exit $CODE after $SECS s (grace ${GRACE} s), $ACCESS access lines, $MISSING expected paths missing"
fi
echo "$OUT" | head -3 | sed 's/^/   stdout | /'
docker logs uh-smoke-uring 2>&1 >/dev/null | tail -2 | sed 's/^/   stderr | /'

# ---------------------------------------------------------------- 2: io_uring refused
say "container 2: a profile without io_uring_setup/enter/register (Docker 25+'s default)"
P2=$(free_port)
run uh-smoke-epoll --security-opt seccomp="$DENY" -e URING_HTTPD_HOST=127.0.0.1 -e URING_HTTPD_PORT="$P2" "$IMAGE"
ERR=$(listening uh-smoke-epoll)
echo "$ERR" | sed 's/^/   | /'
WARNS=$(echo "$ERR" | grep -c WARN)
code=$(get "$P2/" "$TMP/body")
if [ "$WARNS" = 1 ] && echo "$ERR" | grep WARN | grep -q 'serving with the epoll engine' &&
    echo "$ERR" | grep -q '(engine epoll,' && [ "$code" = 200 ] && cmp -s "$TMP/body" "$REPO/root/index.html"; then
    ok "engine epoll with exactly one WARN line, and it serves / byte-exact"
else
    bad "engine epoll with one WARN line ($WARNS WARN lines, GET / $code)"
fi
docker stop -t "$GRACE" uh-smoke-epoll >/dev/null
[ "$(docker inspect -f '{{.State.ExitCode}}' uh-smoke-epoll)" = 0 ] && ok "docker stop on the epoll engine: exit 0" || bad "docker stop on the epoll engine"

run uh-smoke-demand --security-opt seccomp="$DENY" -e URING_HTTPD_HOST=127.0.0.1 -e URING_HTTPD_PORT="$P2" -e URING_HTTPD_ENGINE=uring "$IMAGE"
# Exited, and its last words copied to the log (the copy can trail the exit a little).
WHY='engine = "uring" cannot run here: io_uring_setup was refused'
for _ in $(seq 1 100); do
    [ "$(docker inspect -f '{{.State.Running}}' uh-smoke-demand)" = false ] &&
        docker logs uh-smoke-demand 2>&1 | grep -q "$WHY" && break
    sleep 0.1
done
CODE=$(docker inspect -f '{{.State.ExitCode}}' uh-smoke-demand)
if [ "$CODE" = 1 ] && docker logs uh-smoke-demand 2>&1 | grep -q "$WHY"; then
    ok "URING_HTTPD_ENGINE=uring there exits 1 and says why"
else
    bad "URING_HTTPD_ENGINE=uring where io_uring is refused (exit $CODE)"
fi

# ---------------------------------------------------------------- 3: volumes replace site and config
say "container 3: -v site:/srv/www:ro -v my.toml:/etc/uring-httpd/uring.toml:ro, daemon's default profile"
P3=$(free_port)
mkdir -p "$TMP/site"
printf 'my own site\n' >"$TMP/site/index.html"
printf 'plain text \xe2\x80\x94 bytes\n' >"$TMP/site/notes.txt"
chmod -R a+rX "$TMP/site"
printf '[server]\nhost = "127.0.0.1"\nport = %s\nworkers = 1\n[files]\nroot = "/srv/www"\n[log]\naccess = "-"\n' "$P3" >"$TMP/my.toml"
chmod a+r "$TMP/my.toml"
run uh-smoke-volumes -v "$TMP/site:/srv/www:ro" -v "$TMP/my.toml:/etc/uring-httpd/uring.toml:ro" "$IMAGE"
ERR=$(listening uh-smoke-volumes)
echo "$ERR" | grep 'listening on' | sed 's/^/   | /'
c1=$(get "$P3/notes.txt" "$TMP/body")
cmp -s "$TMP/body" "$TMP/site/notes.txt" && same=yes || same=no
c2=$(get "$P3/images/logo.png" "$TMP/body")
if [ "$c1" = 200 ] && [ "$same" = yes ] && [ "$c2" = 404 ] && echo "$ERR" | grep -q "1 workers"; then
    ok "mounted site and config replace the baked-in ones (notes.txt byte-exact, the demo's logo 404, 1 worker)"
else
    bad "mounted site and config (notes.txt $c1 same=$same, logo $c2)"
fi
if healthy uh-smoke-volumes; then ok "HEALTHCHECK follows the port set in the mounted config ($P3)"; else bad "HEALTHCHECK with the mounted config"; fi
echo "   the daemon's default profile gave: $(echo "$ERR" | grep -o '(engine [a-z]*' | tr -d '(')"
docker stop -t "$GRACE" uh-smoke-volumes >/dev/null

# ---------------------------------------------------------------- 4: the Kubernetes rendering
say "container 4: --security-opt seccomp=deploy/seccomp/seccomp-io_uring.json (the OCI-format rendering)"
P4=$(free_port)
run uh-smoke-k8s-profile --security-opt seccomp="$REPO/deploy/seccomp/seccomp-io_uring.json" -e URING_HTTPD_HOST=127.0.0.1 -e URING_HTTPD_PORT="$P4" "$IMAGE"
ERR=$(listening uh-smoke-k8s-profile)
code=$(get "$P4/" "$TMP/body")
if echo "$ERR" | grep -q '(engine uring,' && [ "$code" = 200 ] && cmp -s "$TMP/body" "$REPO/root/index.html"; then
    ok "the Kubernetes profile allows io_uring too (engine uring, / byte-exact)"
else
    bad "the Kubernetes profile (GET / $code): $ERR"
fi
docker stop -t "$GRACE" uh-smoke-k8s-profile >/dev/null

# ---------------------------------------------------------------- 5: compose
# docker/compose.yaml with only what this machine forces on it: the smoke image, host networking
# instead of the published port (there is no bridge here), and a loopback address on a free port.
if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1; then
    apt_install docker-compose || echo "   (cannot install docker-compose)"
fi
if command -v docker-compose >/dev/null; then COMPOSE=(docker-compose); else COMPOSE=(docker compose); fi
if "${COMPOSE[@]}" version >/dev/null 2>&1; then
    P5=$(free_port)
    say "compose: ${COMPOSE[*]} up -d on docker/compose.yaml (ports: replaced by network_mode: host)"
    for py in python3 /usr/bin/python3; do
        "$py" - "$HERE/compose.yaml" "$TMP/compose.yaml" "$IMAGE" "$P5" <<'EOF' 2>/dev/null && break
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
web = c["services"]["web"]
del web["ports"]
web.update(image=sys.argv[3], network_mode="host")
web["environment"].update(URING_HTTPD_HOST="127.0.0.1", URING_HTTPD_PORT=sys.argv[4])
yaml.safe_dump(c, open(sys.argv[2], "w"))
EOF
    done
    # Run from docker/, so relative paths resolve as they do for the file itself.
    compose() { (cd "$HERE" && "${COMPOSE[@]}" -p uh-smoke --project-directory "$HERE" -f "$TMP/compose.yaml" "$@"); }
    if [ -s "$TMP/compose.yaml" ] && compose up -d >"$TMP/compose.log" 2>&1; then
        CID=$(compose ps -q web)
        CONTAINERS+=("$CID")
        ERR=$(listening "$CID")
        code=$(get "$P5/style.css" "$TMP/body")
        RO=$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.RestartPolicy.Name}}' "$CID")
        if echo "$ERR" | grep -q '(engine uring,' && [ "$code" = 200 ] && cmp -s "$TMP/body" "$REPO/root/style.css" &&
            [ "$RO" = "true [ALL] unless-stopped" ] && healthy "$CID"; then
            ok "compose up: engine uring with the profile, read-only, caps dropped, restart unless-stopped, healthy, style.css byte-exact"
        else
            bad "compose up (GET $code; $RO): $ERR"
        fi
    else
        bad "compose up: $(tail -3 "$TMP/compose.log" 2>/dev/null)"
    fi
    compose down -t "$GRACE" >/dev/null 2>&1 && ok "compose down" || bad "compose down"
else
    echo "   (no Docker Compose here: docker/compose.yaml not run)"
fi

say "$PASS passed, $FAILED failed"
[ "$FAILED" = 0 ]
