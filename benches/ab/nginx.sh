#!/usr/bin/env bash
# nginx.sh on|off PORT: nginx with sendfile on or off, from benches/nginx/lab.conf, in one process.
set -eu
. "$(dirname "$0")/common.sh"
d=$AB_DIR/nginx-$1; mkdir -p "$d/tmp"
sed -e "s#{{USER}}#$( [ "$(id -u)" = 0 ] && echo 'user root;' )#" -e "s#{{WORKERS}}#1#" \
    -e "s#{{PREFIX}}#$d#g" -e "s#{{SENDFILE}}#$1#" -e "s#{{TCP_NOPUSH}}#$1#" \
    -e "s#{{ROOT}}#$SITE#g" -e "s#{{PORT}}#$2#" "$(dirname "$0")/../nginx/lab.conf" > "$d/nginx.conf"
# A placeholder the template gained and this script does not fill would reach nginx as text.
if grep -n '{{' "$d/nginx.conf" >&2; then echo "nginx.sh: unfilled placeholder in $d/nginx.conf" >&2; exit 1; fi
exec nginx -p "$d/" -c "$d/nginx.conf" -e "$d/error.log" -g 'daemon off; master_process off;'
