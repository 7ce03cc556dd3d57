#!/usr/bin/env bash
# Regenerates scripts/launch.order: the functions `run --execution-id` executes (exec,
# --init and --mask-output), in the order callgrind first lists them, for the linker to place side by side (lld
# --symbol-ordering-file, see the Makefile's release target). Fewer distinct pages of code
# are touched per launch: fewer page faults, less to unmap at execve (benchmarks/RESULTS.md).
# Then what a launch touches that callgrind does not show — the data (.bss, .data,
# .rodata), and the code valgrind's CPU does not take (AES-NI, SHA-NI, Landlock,
# memfd_secret paths) — from the addresses of its page faults (perf). lld moves each
# listed symbol's whole input section (for Swift, an object's whole .bss), so the
# runtime's and the modules' lazy caches sit together instead of among
# FoundationEssentials' 136 kB of others (a .bss page costs two faults: the read maps the
# zero page, the write copies it). A page fault names only the first symbol touched on
# its page, so symbols listed before that are still in the binary are kept (run it twice
# or three times after a big change). A stale list costs speed, never correctness: names
# no longer present are skipped.
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
# The sandbox's modes come after the default launch's, so they are placed after it: a
# profile file (valgrind has no Landlock: best effort lets the launch go on), a value as a
# file.
mkdir -p "$work/data"
printf 'fs:\n  read: [data]\n  exec: [/usr/bin]\nnet:\n  connect: [443]\n' > "$work/profile.yaml"
sandbox_modes=("--sandbox $work/profile.yaml --sandbox best-effort" "--file-var SECRET_01")
n=0
# The supervisor's loop (--init) too: once its child runs it releases the executable's
# pages, and what the loop touches again should sit together.
for flags in "" "--no-isolation --seccomp none" "--init" "--mask-output" "${sandbox_modes[@]}"; do
    n=$((n + 1))
    # shellcheck disable=SC2086
    valgrind --tool=callgrind --demangle=no --dump-before=execve --callgrind-out-file="$work/cg.out.$n" \
        "$work/bin" run --execution-id bench $flags -- /bin/true >/dev/null 2>&1 || true
done
python3 - "$work" scripts/launch.order <<'PY'
import glob, re, sys
names, seen = [], set()
extra = ("stigmer_landlock_around_from landlock_walk landlock_is_ancestor landlock_is_protected "
         "stigmer_landlock_allow stigmer_landlock_create stigmer_landlock_abi stigmer_exec stigmer_prepare "
         "landlock_fds_close syscall __open64 __libc_open64 __openat64 __libc_openat64 __close "
         "stigmer_landlock_create_scoped stigmer_landlock_allow_trees stigmer_landlock_allow_port "
         "stigmer_landlock_allow_path private_network write_proc write_id_map").split()
first_mode = 0
for path in sorted(glob.glob(sys.argv[1] + "/cg.out.*")):  # fewer than 10 modes: the names sort in order
    first_mode = first_mode or len(names)
    for line in open(path):
        m = re.match(r"^c?fn=\(\d+\) (.+?)('\d+)?$", line.rstrip("\n"))  # 'N: callgrind's recursion depth
        if m and not m.group(1).startswith("0x") and m.group(1) not in seen:
            seen.add(m.group(1)); names.append(m.group(1))
for n in extra:
    if n not in seen: seen.add(n); names.append(n)
open(sys.argv[1] + "/functions", "w").write("\n".join(names) + "\n")
open(sys.argv[1] + "/first-mode", "w").write(str(first_mode or len(names)))
PY
# Page faults: the symbol holding each faulting address, first touch first, per mode.
: > "$work/faults"
if command -v perf >/dev/null; then
    for flags in "" "--no-isolation --seccomp none" "--init" "--mask-output" "${sandbox_modes[@]}" \
                 "--sandbox $work/profile.yaml" "--no-network"; do
        # shellcheck disable=SC2086
        perf record -q -o "$work/pf.data" -e page-faults -c 1 -d -- "$work/bin" run --execution-id bench $flags -- /bin/true >/dev/null 2>&1 || true
        perf script -i "$work/pf.data" -F comm,addr 2>/dev/null | awk '$1 != "true" { print $2 }' >> "$work/faults"
    done
else
    echo "no perf (apt-get install -y linux-perf): the page-fault symbols are kept as they were" >&2
fi
# What this CPU runs that valgrind's does not (glibc's AVX-512 string functions and AMD
# paths, SHA-NI, VAES): sampled over 300 default launches.
: > "$work/ips"
if command -v perf >/dev/null; then
    perf record -q -F 20000 -o "$work/cpu.data" -- bash -c 'for i in $(seq 300); do "$0" run --execution-id bench -- /bin/true; done' \
        "$work/bin" >/dev/null 2>&1 || true
    perf script -i "$work/cpu.data" --comm bin -F ip 2>/dev/null > "$work/ips" || true
fi
# lld moves a listed symbol's whole input section, and a few are large and monolithic (the
# standard library's Swift.o .text, 1.5 MB; _RegexParser.o's, 475 kB; SQLite's fts5.o):
# placed among the small ones, one name each spread the launch's code over megabytes.
# Their names go last; the link map says which they are (only for the default binary).
map=""
if [ -z "${1:-}" ] && make -s launcher LAUNCHER_MAP="$work/map" >/dev/null; then map="$work/map"; fi
nm -n "$work/bin" > "$work/nm"
python3 - "$work" scripts/launch.order "$map" <<'PY'
import bisect, collections, os, re, sys
work, out, mapfile = sys.argv[1], sys.argv[2], sys.argv[3]
names = open(work + "/functions").read().split()
data = []  # (address, name) of the binary's data and code symbols, sorted
for line in open(work + "/nm"):
    p = line.split()
    if len(p) >= 3 and p[1] in "bBdDrRtTwW":
        data.append((int(p[0], 16), p[2]))
starts = [a for a, _ in data]
kinds = {n for _, n in data}
seen = set(names)
# Sampled functions callgrind did not list, the most sampled first, after its names.
counts = collections.Counter()
for line in open(work + "/ips"):
    try:
        addr = int(line.strip(), 16)
    except ValueError:
        continue
    i = bisect.bisect_right(starts, addr) - 1
    if i >= 0 and addr - starts[i] < 1 << 16:
        counts[data[i][1]] += 1
# (The default launch's functions are listed first: these go right after them.)
first_mode = int(open(work + "/first-mode").read())
names = names[:first_mode] + [n for n, _ in counts.most_common() if n not in seen] + names[first_mode:]
seen = set(names)
hot = []
for line in open(work + "/faults"):
    addr = int(line.strip(), 16)
    i = bisect.bisect_right(starts, addr) - 1
    # Only the executable's own data, not the heap or the stack past its end.
    if i < 0 or addr - starts[i] > 1 << 20:
        continue
    name = data[i][1]
    if name not in seen:
        seen.add(name); hot.append(name)
previous = open(out).read().split() if os.path.exists(out) else []
kept = [n for n in previous if n in kinds and n not in seen]
listed = names + hot + kept
demoted = []
if mapfile:
    # lld's map: input sections (VMA, size) under allocated output sections; a symbol
    # (local ones too: lld orders every section defining a listed name) is in the one
    # holding its address.
    sections, output = [], None
    for line in open(mapfile):
        m = re.match(r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+(\s+)(\S.*)$", line.rstrip("\n"))
        if not m:
            continue
        if len(m.group(3)) == 1:
            output = m.group(4)
        elif len(m.group(3)) == 9 and output and not output.startswith((".debug", ".comment", ".symtab", ".strtab", ".shstrtab")):
            if int(m.group(2), 16) > 0:
                sections.append((int(m.group(1), 16), int(m.group(2), 16)))
    sections.sort()
    section_starts = [a for a, _ in sections]
    addresses = collections.defaultdict(list)
    for a, n in data:
        addresses[n].append(a)
    def in_large_section(name):
        for a in addresses.get(name, []):
            i = bisect.bisect_right(section_starts, a) - 1
            if i >= 0 and a < sections[i][0] + sections[i][1] and sections[i][1] >= 64 << 10:
                return True
        return False
    demoted = [n for n in listed if in_large_section(n)]
    large = set(demoted)
    listed = [n for n in listed if n not in large] + demoted
open(out, "w").write("\n".join(listed) + "\n")
print(f"{len(names)} functions (callgrind, then sampled), {len(hot) + len(kept)} symbols from page faults, "
      f"{len(demoted)} in sections of 64 kB or more placed last, in {out}")
PY
