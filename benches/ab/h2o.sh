#!/usr/bin/env bash
# h2o.sh PORT: h2o from benches/h2o/lab.conf, in worker mode (the started process serves).
set -eu
. "$(dirname "$0")/common.sh"
d=$AB_DIR/h2o; mkdir -p "$d"
fill "$(dirname "$0")/../h2o/lab.conf" "$d/h2o.conf" \
    -e "s#{{USER}}#$( [ "$(id -u)" = 0 ] && echo 'user: root' )#" -e "s#{{PREFIX}}#$d#g" \
    -e "s#{{ROOT}}#$SITE#g" -e "s#{{PORT}}#$1#"
exec h2o -m worker -c "$d/h2o.conf"
