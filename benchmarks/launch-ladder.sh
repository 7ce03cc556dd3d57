#!/usr/bin/env bash
# Where a launch's time goes, step by step: each rung adds one part of `run --execution-id`
# to the one before, all interleaved in one session (benchmarks/paired.py), so the
# differences between rungs are each part's wall-time cost on this machine.
#   1. env -i (50 vars) /bin/true                 the reference
#   2. a static C program that only execv's         the floor of any launcher
#   3. a static Swift program that only execv's     the floor of a Swift launcher
#   4. stigmer-exec run, no values, no seccomp, no Landlock
#   5. + the context (store read, key, tag, 20 AES opens, the child's environment)
#   6. + the default seccomp filter
#   7. + Landlock: the default launch
# Usage: benchmarks/launch-ladder.sh [BINARY]   (default: dist/stigmer-exec); ROUNDS=400.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-dist/stigmer-exec}")
command -v gcc >/dev/null || { echo "needs gcc: apt-get install -y gcc" >&2; exit 1; }
swiftc=$(command -v swiftc || echo /opt/swift/usr/bin/swiftc)

. benchmarks/common.sh
as_installed "$bin"
bench_context
vars=()
mapfile -t vars < <(cat "$work/plain.env" "$work/secret.env")

printf '#include <unistd.h>\nint main(int c, char **v) { execv(v[1], v + 1); return 127; }\n' > "$work/floor.c"
gcc -O2 -static -o "$work/floor-c" "$work/floor.c"
cat > "$work/floor.swift" <<'EOF'
#if canImport(Glibc)
import Glibc
#endif
let args = CommandLine.arguments
var argv: [UnsafeMutablePointer<CChar>?] = args.dropFirst().map { strdup($0) }
argv.append(nil)
execv(args[1], argv)
exit(127)
EOF
"$swiftc" -O -static-executable "$work/floor.swift" -o "$work/floor-swift" 2>/dev/null

off=(--no-isolation --seccomp none)
benchmarks/paired.py "${ROUNDS:-400}" \
    "env -i=env -i ${vars[*]} /bin/true" \
    "static C execv=$work/floor-c /bin/true" \
    "static Swift execv=$work/floor-swift /bin/true" \
    "run, no values=$bin run ${off[*]} -- /bin/true" \
    "+ context=$bin run --execution-id bench ${off[*]} -- /bin/true" \
    "+ seccomp=$bin run --execution-id bench --no-isolation -- /bin/true" \
    "+ Landlock (default)=$bin run --execution-id bench -- /bin/true"
