#!/usr/bin/env bash
# The gRPC service under load, on SQLite and on PostgreSQL: fetch latency (p50/p99) and
# throughput with 1, 8 and 32 concurrent clients (each fetch: auth, read the context, open
# 20 secrets, HPKE-seal 50 values to the caller's key), and create+delete throughput.
# Builds the release binaries and the load generator first. The server runs pinned to CPU 1,
# the load generator to CPU 0 (PIN=0: unpinned); each line ends with how busy each was.
# A third load, on SQLite only: the same fetch refused at once (a wrong operator token), the
# transport's own ceiling on the server's core.
#   benchmarks/remote.sh            (SECONDS_PER_RUN=5 by default; BIN_DIR=DIR: built binaries)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/opt/swift/usr/bin"
# BIN_DIR: binaries built already (stigmer-exec, stigmer-exec-full, stigmer-bench), say
# another commit's for a before-and-after.
if [ -z "${BIN_DIR:-}" ]; then
    swift build -c release --product stigmer-exec >/dev/null
    swift build -c release --product stigmer-exec-full >/dev/null
    swift build -c release --product stigmer-bench >/dev/null
fi
bin=${BIN_DIR:-$PWD/.build/release}
secs=${SECONDS_PER_RUN:-5}

work=$(mktemp -d)
chmod 755 "$work"   # PostgreSQL runs as its own user and must reach its folder
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; scripts/postgres.sh stop "$work/pg" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export STIGMER_HOME=$work/home
unset STIGMER_ENCRYPTION_KEY STIGMER_EXECUTION_ID STIGMER_STORE STIGMER_SERVER
"$bin/stigmer-exec" key init 2>/dev/null
token=operator-$(head -c 16 /dev/urandom | base64 | tr -dc a-zA-Z0-9)
(umask 077; echo "$token" > "$work/op")  # the operator token file must be 0600
for i in $(seq -w 1 30); do echo "PLAIN_$i=value-$i"; done > "$work/plain.env"
for i in $(seq -w 1 20); do echo "SECRET_$i=$(head -c 24 /dev/urandom | base64)"; done > "$work/secret.env"

# As the issue asks: the server on one core, the load generator on the other (PIN=0: off).
# Each line also says how busy each side was (CPU seconds / wall seconds): the side at 1.0
# is what bounds the figure.
server_cpu=1 client_cpu=0
if [ "${PIN:-1}" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_server=(taskset -c "$server_cpu"); pin_client=(taskset -c "$client_cpu")
else
    pin_server=(); pin_client=()
fi
cpu_seconds() {  # $1: pid — user+system CPU seconds so far
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

start_server() {  # $1: store location
    "${pin_server[@]}" "$bin/stigmer-exec" serve --listen 127.0.0.1:0 --operator-token-file "$work/op" --store "$1" --log-level error \
        2> "$work/serve.err" &
    server_pid=$!
    for _ in $(seq 100); do grep -q "serving on" "$work/serve.err" 2>/dev/null && break; sleep 0.1; done
    port=$(grep -o 'grpc://127.0.0.1:[0-9]*' "$work/serve.err" | head -1 | cut -d: -f3)
}
stop_server() { kill "$server_pid"; wait "$server_pid" || true; server_pid=; }

load() {  # $1: label, then stigmer-bench's arguments
    local label=$1; shift
    local before; before=$(cpu_seconds "$server_pid")
    local t0; t0=$(date +%s.%N)
    local out; out=$( { /usr/bin/time -f "%U %S" "${pin_client[@]}" "$bin/stigmer-bench" --port "$port" --token "$token" --seconds "$secs" "$@" ; } 2> "$work/time.err")
    local wall; wall=$(echo "$(date +%s.%N) - $t0" | bc)
    local server; server=$(echo "$(cpu_seconds "$server_pid") - $before" | bc)
    local client; client=$(tail -1 "$work/time.err" | awk '{print $1 + $2}')
    echo "$label $out server_busy=$(echo "scale=2; $server / $wall" | bc) client_busy=$(echo "scale=2; $client / $wall" | bc)"
}

measure() {  # $1: label
    ids=
    for i in $(seq 1 16); do
        STIGMER_TOKEN=$token "$bin/stigmer-exec" context create --server "grpc://127.0.0.1:$port" --execution-id "bench-$i" \
            --env-file "$work/plain.env" --secret-file "$work/secret.env" --replace >/dev/null 2>&1
        ids="$ids${ids:+,}bench-$i"
    done
    for c in 1 8 32; do load "$1" --mode fetch --ids "$ids" --concurrency $c; done
    # The same call refused at once (a wrong operator token): the transport's own ceiling.
    if [ "$1" = sqlite ]; then load "$1" --mode denied --ids "$ids" --concurrency 32; fi
    load "$1" --mode create-delete --concurrency 8
}

start_server "$work/server.db"
measure sqlite
stop_server
pg=$(scripts/postgres.sh start "$work/pg")
start_server "$pg"
measure postgres
stop_server
