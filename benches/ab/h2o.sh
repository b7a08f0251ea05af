#!/usr/bin/env bash
# h2o.sh PORT: h2o from benches/h2o/lab.conf, in worker mode (the started process serves).
set -eu
. "$(dirname "$0")/common.sh"
d=$AB_DIR/h2o; mkdir -p "$d"
sed -e "s#{{USER}}#$( [ "$(id -u)" = 0 ] && echo 'user: root' )#" -e "s#{{PREFIX}}#$d#g" \
    -e "s#{{ROOT}}#$SITE#g" -e "s#{{PORT}}#$1#" "$(dirname "$0")/../h2o/lab.conf" > "$d/h2o.conf"
# A placeholder the template gained and this script does not fill would reach h2o as text.
if grep -n '{{' "$d/h2o.conf" >&2; then echo "h2o.sh: unfilled placeholder in $d/h2o.conf" >&2; exit 1; fi
exec h2o -m worker -c "$d/h2o.conf"
