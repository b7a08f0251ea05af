#!/usr/bin/env bash
# uring.sh BIN ENGINE [CONFIG-LINES]: prints an abc.sh command running uring-httpd BIN on @P with
# one worker and the access log off; CONFIG-LINES (e.g. $'[files]\ncache_max_file_bytes = 1048576')
# are added to its configuration.
set -u
. "$(dirname "$0")/common.sh"
BIN=$(realpath "$1"); ENGINE=$2
cfg=$AB_DIR/$(basename "$BIN")-$ENGINE-$RANDOM.toml
printf '[server]\nhost = "127.0.0.1"\nworkers = 1\n[log]\naccess = "off"\nlevel = "warn"\n%s\n' "${3:-}" > "$cfg"
echo "env URING_HTTPD_PORT=@P URING_HTTPD_ENGINE=$ENGINE URING_HTTPD_ROOT=$SITE $BIN --config $cfg"
