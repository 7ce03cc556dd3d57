#!/usr/bin/env bash
# Regenerates scripts/launch.order: the functions `run --execution-id` executes (exec,
# --init and --mask-output), in the order callgrind first lists them, for the linker to place side by side (lld
# --symbol-ordering-file, see the Makefile's release target). Fewer distinct pages of code
# are touched per launch: fewer page faults, less to unmap at execve (benchmarks/RESULTS.md).
# A stale list costs speed, never correctness: names no longer present are skipped.
#   scripts/generate-launch-order.sh [BINARY]   (default: the static release build)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-.build-static/release/stigmer-exec}")
command -v valgrind >/dev/null || { echo "needs valgrind: apt-get install -y valgrind" >&2; exit 1; }
. benchmarks/common.sh
bench_context
# valgrind cannot read the full debug info of a 45 MB binary quickly, nor pass Landlock or
# memfd_secret through (those paths fall back; the C walk is added by name below).
strip --strip-debug -o "$work/bin" "$bin"
n=0
# The supervisor's loop (--init) too: once its child runs it releases the executable's
# pages, and what the loop touches again should sit together.
for flags in "" "--no-isolation --seccomp none" "--init" "--mask-output"; do
    n=$((n + 1))
    # shellcheck disable=SC2086
    valgrind --tool=callgrind --demangle=no --dump-before=execve --callgrind-out-file="$work/cg.out.$n" \
        "$work/bin" run --execution-id bench $flags -- /bin/true >/dev/null 2>&1 || true
done
python3 - "$work" scripts/launch.order <<'PY'
import glob, re, sys
names, seen = [], set()
extra = ("stigmer_landlock_around landlock_walk landlock_is_ancestor landlock_is_protected "
         "stigmer_landlock_allow stigmer_landlock_create stigmer_landlock_abi stigmer_exec stigmer_prepare "
         "landlock_fds_close syscall __open64 __libc_open64 __openat64 __libc_openat64 __close").split()
for path in sorted(glob.glob(sys.argv[1] + "/cg.out.*")):
    for line in open(path):
        m = re.match(r"^c?fn=\(\d+\) (.+?)('\d+)?$", line.rstrip("\n"))  # 'N: callgrind's recursion depth
        if m and not m.group(1).startswith("0x") and m.group(1) not in seen:
            seen.add(m.group(1)); names.append(m.group(1))
for n in extra:
    if n not in seen: seen.add(n); names.append(n)
open(sys.argv[2], "w").write("\n".join(names) + "\n")
print(f"{len(names)} functions in {sys.argv[2]}")
PY
