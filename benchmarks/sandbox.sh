#!/usr/bin/env bash
# What the sandbox adds to a launch (issue 13's figure): `run --execution-id` (50 variables,
# 20 secret, default filter) of /bin/true, paired and interleaved (benchmarks/paired.py):
#   default              Landlock keeps the child out of the home (the walk around it)
#   + fs profile         --sandbox FILE: read a data tree, write a work tree, exec /usr/bin,
#                        connect to 443 only (the base set and the command's own rules added)
#   + --no-network       a network namespace of its own, loopback up
#   + --file-var         one secret as a sealed memfd, NAME_FILE=/dev/fd/N
#   --no-isolation       no Landlock at all: what the ruleset costs by itself
# Usage: benchmarks/sandbox.sh [BINARY]   (default: dist/stigmer-exec); ROUNDS=400.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-dist/stigmer-exec}")

. benchmarks/common.sh
bench_context
mkdir -p "$work/data" "$work/out"
cat > "$work/profile.yaml" <<PROFILE
fs:
  read: [data]
  write: [out]
  exec: [/usr/bin]
net:
  connect: [443]
PROFILE

benchmarks/paired.py "${ROUNDS:-400}" \
    "default=$bin run --execution-id bench -- /bin/true" \
    "+ fs profile=$bin run --execution-id bench --sandbox $work/profile.yaml -- /bin/true" \
    "+ --no-network=$bin run --execution-id bench --no-network -- /bin/true" \
    "+ --file-var=$bin run --execution-id bench --file-var SECRET_01 -- /bin/true" \
    "--no-isolation=$bin run --execution-id bench --no-isolation -- /bin/true"
