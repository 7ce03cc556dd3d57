# Sourced by the benchmarks, after `bin` is set: a work folder (removed on exit) and a home
# in it holding a key. The work folder sits under ~/.cache (BENCH_PARENT), as a default
# ~/.stigmer sits under ~, not in a crowded /tmp: the home's ancestors decide the Landlock
# ruleset's size (one rule per entry beside the way down).
mkdir -p "${BENCH_PARENT:=$HOME/.cache}"
work=$(mktemp -d -p "$BENCH_PARENT" stigmer-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
export STIGMER_HOME=$work/home
unset STIGMER_ENCRYPTION_KEY STIGMER_EXECUTION_ID STIGMER_STORE
"$bin" key init 2>/dev/null

# The launch benchmarks' context `bench`: 30 plain variables and 20 secret ones, from
# $work/plain.env and $work/secret.env, created in STIGMER_HOME by BINARY (default $bin).
bench_context() {
    [ -f "$work/plain.env" ] || for i in $(seq -w 1 30); do echo "PLAIN_$i=value-$i-$(head -c 12 /dev/urandom | base64)"; done > "$work/plain.env"
    [ -f "$work/secret.env" ] || for i in $(seq -w 1 20); do echo "SECRET_$i=$(head -c 24 /dev/urandom | base64)"; done > "$work/secret.env"
    "${1:-$bin}" context create --execution-id bench --env-file "$work/plain.env" --secret-file "$work/secret.env" 2>/dev/null
}

# The placeholder benchmarks' context `bench`: VAR_0 … VAR_99.
bench_vars_context() {
    for i in $(seq 0 99); do echo "VAR_$i=value-$i"; done > "$work/vars.env"
    "$bin" context create --execution-id bench --env-file "$work/vars.env" 2>/dev/null
}

# The page cache of each binary as a fresh install leaves it: dropped, then read as a file.
# How the kernel last read a binary decides how it maps it: read by cp or cat, the page cache
# holds large folios, and a launch of this one took 164-167 page faults; dropped under memory
# pressure and faulted back in by running it, small ones, and 187-191 (~0.1 ms more;
# benchmarks/RESULTS.md, 2026-12-08). Builds compared in one run must start alike.
as_installed() {
    local f
    for f in "$@"; do
        sync "$f" 2>/dev/null || true
        dd if="$f" iflag=nocache count=0 status=none 2>/dev/null || true
        cat "$f" > /dev/null
    done
}
