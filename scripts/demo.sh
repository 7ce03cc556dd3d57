#!/usr/bin/env bash
# The local story on a fresh machine, in a temporary home that is removed afterwards.
# Secret values are never printed: only names, flags and layers.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${STIGMER_EXEC_BIN:-.build/debug/stigmer-exec}
examples=../shared/examples
[ -d "$examples" ] || examples=examples

export STIGMER_HOME
STIGMER_HOME=$(mktemp -d)/home
trap 'rm -rf "$(dirname "$STIGMER_HOME")"' EXIT
unset STIGMER_ENCRYPTION_KEY

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. Create an encryption key (0600, in a 0700 home)"
"$bin" key init
ls -ld "$STIGMER_HOME" "$STIGMER_HOME/encryption.key" | awk '{print $1, $NF}'

step "2. Seal a value for a manifest (plaintext on stdin, sealed form on stdout)"
work=$(dirname "$STIGMER_HOME")
sealed=$(head -c 24 /dev/urandom | base64 | "$bin" key seal --scope environment:slack --name SLACK_WEBHOOK)
echo "SLACK_WEBHOOK: encrypted_value: ${sealed:0:32}…"
manifest() {
    printf 'apiVersion: agentic.stigmer.ai/v1\nkind: Environment\nmetadata:\n  name: %s\nspec:\n  data:\n    SLACK_WEBHOOK:\n      encrypted_value: %s\n' "$1" "$sealed"
}
manifest slack > "$work/environment-slack.yaml"
# The value is bound to environment:slack / SLACK_WEBHOOK: pasted into another
# Environment it must not open.
manifest elsewhere > "$work/environment-elsewhere.yaml"
echo "$ stigmer-exec plan -f environment-elsewhere.yaml --env-ref elsewhere"
set +e
"$bin" plan -f "$work/environment-elsewhere.yaml" --env-ref elsewhere >/dev/null
echo "(exit $? — a sealed value moved to another environment is refused)"
set -e

step "3. Merge agent template < environments < runtime, and show where each variable came from"
echo "$ stigmer-exec plan -f <examples> --agent github-reviewer --env-ref base --env-ref github-prod --env-ref slack --env-file runtime.env"
"$bin" plan \
    -f "$examples/agent-github-reviewer.yaml" \
    -f "$examples/environment-base.yaml" \
    -f "$examples/environment-github-prod.yaml" \
    -f "$work/environment-slack.yaml" \
    --agent github-reviewer --env-ref base --env-ref github-prod --env-ref slack \
    --env-file "$examples/runtime.env"

step "4. A required variable nobody supplies is an error that names it (exit 78)"
set +e
"$bin" plan -f "$examples/agent-github-reviewer.yaml" -f "$examples/agentinstance-github-reviewer-prod.yaml" \
    -f "$examples/environment-base.yaml" -f "$examples/environment-github-prod.yaml" \
    --instance github-reviewer-prod </dev/null
echo "(exit $?)"
set -e
echo
echo "Demo done; the temporary home is removed."
