#!/usr/bin/env bash
# Resident cost of `run --init` kept as PID 1 / subreaper for a container's life, side by
# side with tini: VmRSS (and its anonymous and file-backed parts) of the supervisor one
# second after its child (`sleep`) started, three times.
# Usage: benchmarks/init-rss.sh [BINARY]   (default: dist/stigmer-exec; needs tini)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-dist/stigmer-exec}")
command -v tini >/dev/null || { echo "needs tini: apt-get install -y tini" >&2; exit 1; }
. benchmarks/common.sh
as_installed "$bin"
bench_context
rss() { awk '/^(VmRSS|RssAnon|RssFile):/ {printf "%s %s kB  ", $1, $2}' "/proc/$1/status"; }
for i in 1 2 3; do
    "$bin" run --execution-id bench --init -- sleep 2 & a=$!
    tini -s -- sleep 2 & b=$!
    sleep 1
    echo "stigmer-exec --init: $(rss $a)"
    echo "tini:                $(rss $b)"
    wait
done
