#!/bin/sh
# Renders exitlab's HTML report in a real browser (headless Chromium) and
# saves what a reader sees as PNGs, 1100 pixels wide.
#
#   scripts/screenshot-report.sh [REPORT_HTML] [OUT_DIR] [VIEW...]
#
# A VIEW is HEIGHT (the page from its top) or OFFSET:HEIGHT (the page from
# OFFSET pixels down). Defaults: out/report/report.html,
# out/report/screenshots, one view of the first 2400 pixels. Needs
# `chromium` (Debian: apt-get install -y chromium). A fresh profile
# directory each run, no network, no GPU, no sandbox (containers run as
# root). Prints the PNGs it wrote.
set -eu
html=${1:-out/report/report.html}
out=${2:-out/report/screenshots}
[ $# -ge 2 ] && shift 2 || shift $#
views=${*:-2400}
[ -f "$html" ] || { echo "screenshot-report: no report at $html (run exitlab report first)" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "screenshot-report: no chromium (apt-get install -y chromium)" >&2; exit 2; }
mkdir -p "$out"
dir=$(cd "$(dirname "$html")" && pwd)
for view in $views; do
    case $view in
        *:*) offset=${view%%:*}; height=${view#*:} ;;
        *) offset=0; height=$view ;;
    esac
    # The page shifted up by OFFSET, in a copy beside the original.
    page="$dir/.screenshot-$$.html"
    sed "s|<head>|<head><style>body{position:relative;top:-${offset}px}</style>|" "$html" > "$page"
    profile=$(mktemp -d)
    png="$out/report-${offset}-${height}.png"
    "$browser" --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
        --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
        --window-size=1100,"$height" --screenshot="$png" "file://$page" >/dev/null 2>&1 || true
    rm -rf "$profile" "$page"
    [ -s "$png" ] || { echo "screenshot-report: chromium wrote no $png" >&2; exit 1; }
    echo "$png"
done
