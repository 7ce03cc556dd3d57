#!/usr/bin/env bash
# Resident cost of `run --init` kept as PID 1 / subreaper for a container's life, side by
# side with tini: VmRSS (and its anonymous and file-backed parts) of the supervisor one
# second after its child (`sleep`) started, three times.
# Usage: benchmarks/init-rss.sh [BINARY]   (default: dist/stigmer-exec; needs tini)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-dist/stigmer-exec}")
command -v tini >/dev/null || { echo "needs tini: apt-get install -y tini" >&2; exit 1; }
mkdir -p "${BENCH_PARENT:=$HOME/.cache}"
work=$(mktemp -d -p "$BENCH_PARENT" stigmer-rss.XXXXXX)
trap 'rm -rf "$work"' EXIT
export STIGMER_HOME=$work/home
unset STIGMER_ENCRYPTION_KEY STIGMER_EXECUTION_ID STIGMER_STORE
"$bin" key init 2>/dev/null
for i in $(seq -w 1 30); do echo "PLAIN_$i=value-$i"; done > "$work/plain.env"
for i in $(seq -w 1 20); do echo "SECRET_$i=$(head -c 24 /dev/urandom | base64)"; done > "$work/secret.env"
"$bin" context create --execution-id bench --env-file "$work/plain.env" --secret-file "$work/secret.env" 2>/dev/null
rss() { awk '/^(VmRSS|RssAnon|RssFile):/ {printf "%s %s kB  ", $1, $2}' "/proc/$1/status"; }
for i in 1 2 3; do
    "$bin" run --execution-id bench --init -- sleep 2 & a=$!
    tini -s -- sleep 2 & b=$!
    sleep 1
    echo "stigmer-exec --init: $(rss $a)"
    echo "tini:                $(rss $b)"
    wait
done
