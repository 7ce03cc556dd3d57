#!/usr/bin/env bash
# The local story on a fresh machine, in a temporary home removed afterwards:
# key → apply manifests → context (runtime override + secret) → launch → delete.
# Secret values are never printed: only names, flags, layers and lengths.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${STIGMER_EXEC_BIN:-.build/debug/stigmer-exec}
examples=../shared/examples

export STIGMER_HOME
work=$(mktemp -d)
STIGMER_HOME=$work/home
trap 'rm -rf "$work"' EXIT
unset STIGMER_ENCRYPTION_KEY STIGMER_EXECUTION_ID STIGMER_STORE

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; }

step "1. An encryption key (0600, in a 0700 home)"
show "stigmer-exec key init"
"$bin" key init
ls -ld "$STIGMER_HOME" "$STIGMER_HOME/encryption.key" | awk '{print $1, $NF}'

step "2. Apply the example manifests (secrets are sealed before they are stored)"
show "stigmer-exec apply -f agent-github-reviewer.yaml -f agentinstance-github-reviewer-prod.yaml -f environment-base.yaml -f environment-github-prod.yaml"
"$bin" apply -f "$examples/agent-github-reviewer.yaml" -f "$examples/agentinstance-github-reviewer-prod.yaml" \
    -f "$examples/environment-base.yaml" -f "$examples/environment-github-prod.yaml"
show "stigmer-exec env get github-prod"
"$bin" env get github-prod

step "3. A required secret nobody supplied is named, and nothing is created (exit 78)"
show "stigmer-exec context create --execution-id demo-1 --instance github-reviewer-prod"
set +e; "$bin" context create --execution-id demo-1 --instance github-reviewer-prod </dev/null; echo "(exit $?)"; set -e

step "4. Create the context: instance + a runtime env file, an override and a secret from stdin"
show "printf 'hooks-…' | stigmer-exec context create --execution-id demo-1 --instance github-reviewer-prod --env-file runtime.env --env LOG_LEVEL=trace --secret SLACK_WEBHOOK"
head -c 18 /dev/urandom | base64 | "$bin" context create --execution-id demo-1 --instance github-reviewer-prod \
    --env-file "$examples/runtime.env" --env LOG_LEVEL=trace --secret SLACK_WEBHOOK
show "stigmer-exec context get demo-1"
"$bin" context get demo-1
echo "In the database, secrets are ciphertext bound to execution:demo-1:"
python3 - "$STIGMER_HOME/stigmer.db" <<'PY'
import sqlite3, sys
for name, value in sqlite3.connect(sys.argv[1]).execute(
        "SELECT name, value FROM context_values WHERE is_secret = 1 ORDER BY name"):
    print(f"  {name}: {value[:30]}…")
PY

step "5. Launch: the child gets the variables (secrets shown here only as lengths)"
show "STIGMER_EXECUTION_ID=demo-1 stigmer-exec run --delete-on-exit -- sh -c '…'"
set +e
STIGMER_EXECUTION_ID=demo-1 "$bin" run --delete-on-exit -- sh -c '
    for v in LOG_LEVEL TIMEOUT GITHUB_ORG REGION GREETING; do eval "printf \"  %-14s %s\n\" $v \"\$$v\""; done
    printf "  %-14s <secret, %s chars>\n" GITHUB_TOKEN "${#GITHUB_TOKEN}" SLACK_WEBHOOK "${#SLACK_WEBHOOK}"
    printf "  STIGMER_* variables seen by the child: %s\n" "$(env | grep -c "^STIGMER_" || true)"
    exit 3'
echo "(exit $? — the child's own status)"
set -e

step "6. --delete-on-exit removed the context"
show "stigmer-exec context get demo-1"
set +e; "$bin" context get demo-1; echo "(exit $?)"; set -e

step "7. Ephemeral: merge in memory and launch, nothing written"
show "stigmer-exec run --env-ref github-prod --env GREETING=hi -- sh -c 'echo \$GREETING from \$GITHUB_ORG'"
"$bin" run --env-ref github-prod --env GREETING=hi -- sh -c 'echo "  $GREETING from $GITHUB_ORG"'
echo
echo "Demo done; the temporary home is removed."
