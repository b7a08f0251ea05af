#!/usr/bin/env bash
# nginx.sh on|off PORT: nginx with sendfile on or off, from benches/nginx/lab.conf, in one process.
set -eu
. "$(dirname "$0")/common.sh"
d=$AB_DIR/nginx-$1; mkdir -p "$d/tmp"
fill "$(dirname "$0")/../nginx/lab.conf" "$d/nginx.conf" \
    -e "s#{{USER}}#$( [ "$(id -u)" = 0 ] && echo 'user root;' )#" -e "s#{{WORKERS}}#1#" \
    -e "s#{{PREFIX}}#$d#g" -e "s#{{SENDFILE}}#$1#" -e "s#{{TCP_NOPUSH}}#$1#" \
    -e "s#{{ROOT}}#$SITE#g" -e "s#{{PORT}}#$2#"
exec nginx -p "$d/" -c "$d/nginx.conf" -e "$d/error.log" -g 'daemon off; master_process off;'
