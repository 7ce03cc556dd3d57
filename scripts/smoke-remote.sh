#!/usr/bin/env bash
# A remote round trip with the release binaries in dist/ (or SMOKE_LAUNCHER and
# SMOKE_COMPANION): serve, create a context with a secret, fetch it from a home that holds
# no key. Prints one line; exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
launcher=$(realpath "${SMOKE_LAUNCHER:-dist/stigmer-exec}")
export STIGMER_EXEC_FULL=$(realpath "${SMOKE_COMPANION:-dist/stigmer-exec-full}")
work=$(mktemp -d)
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
unset STIGMER_ENCRYPTION_KEY STIGMER_EXECUTION_ID STIGMER_STORE STIGMER_SERVER STIGMER_TOKEN
export STIGMER_HOME=$work/server
"$launcher" key init 2>/dev/null
(umask 077; head -c 24 /dev/urandom | base64 > "$work/op")  # the operator token file must be 0600
"$launcher" serve --listen 127.0.0.1:0 --operator-token-file "$work/op" 2> "$work/serve.err" &
server=$!
for _ in $(seq 100); do grep -q "serving on" "$work/serve.err" && break; sleep 0.1; done
url=$(grep -o 'grpc://127.0.0.1:[0-9]*' "$work/serve.err")
canary=canary-$RANDOM$RANDOM
echo "$canary" | STIGMER_TOKEN=$(cat "$work/op") "$launcher" context create --server "$url" \
    --execution-id smoke --secret CANARY 2>/dev/null > "$work/token"
got=$(STIGMER_HOME=$work/client STIGMER_TOKEN=$(cat "$work/token") "$launcher" run --server "$url" \
    --execution-id smoke -- sh -c 'printf %s "$CANARY"')
[ "$got" = "$canary" ] || { echo "smoke-remote: the value did not arrive" >&2; exit 1; }
[ ! -e "$work/client/encryption.key" ] || { echo "smoke-remote: the client home has a key" >&2; exit 1; }
echo "$(basename "$(dirname "$launcher")")/stigmer-exec with $(basename "$(dirname "$STIGMER_EXEC_FULL")")/stigmer-exec-full: remote round trip ok"
