#!/bin/sh
# Renders exitlab's HTML report in a real browser (headless Chromium) and
# saves what a reader sees as PNGs: the top of the page and the first
# experiment's figures, each `height` pixels tall, 1100 wide.
#
#   scripts/screenshot-report.sh [REPORT_HTML] [OUT_DIR] [HEIGHTS...]
#
# Defaults: out/report/report.html, out/report/screenshots, one screenshot
# 9000 px tall (the page's first sections). Needs `chromium` (Debian:
# apt-get install -y chromium). A fresh profile directory each run, no
# network, no GPU, no sandbox (containers run as root).
set -eu
html=${1:-out/report/report.html}
out=${2:-out/report/screenshots}
shift 2 2>/dev/null || shift $#
heights=${*:-9000}
[ -f "$html" ] || { echo "screenshot-report: no report at $html (run exitlab report first)" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "screenshot-report: no chromium (apt-get install -y chromium)" >&2; exit 2; }
mkdir -p "$out"
url="file://$(cd "$(dirname "$html")" && pwd)/$(basename "$html")"
for h in $heights; do
    profile=$(mktemp -d)
    png="$out/report-1100x$h.png"
    "$browser" --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
        --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
        --window-size=1100,"$h" --screenshot="$png" "$url" >/dev/null 2>&1 || true
    rm -rf "$profile"
    [ -s "$png" ] || { echo "screenshot-report: chromium wrote no $png" >&2; exit 1; }
    echo "$png"
done
