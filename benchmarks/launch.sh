#!/usr/bin/env bash
# Launch cost: `stigmer-exec run --execution-id` (50 variables, 20 of them secret, from the
# embedded SQLite store) against `env -i <the same 50 variables> /bin/true`.
# Usage: benchmarks/launch.sh [BINARY [BASELINE]]   (default: dist/stigmer-exec from `make release`)
# With BASELINE (another build, e.g. the previous commit's), both run in the same hyperfine
# session, paired: "before and after" on the same machine state.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-dist/stigmer-exec}")
baseline=${2:+$(realpath "$2")}
command -v hyperfine >/dev/null || { echo "needs hyperfine: apt-get install -y hyperfine" >&2; exit 1; }

. benchmarks/common.sh
as_installed "$bin" ${baseline:+"$baseline"}
bench_context
vars=()
mapfile -t vars < <(cat "$work/plain.env" "$work/secret.env")

# Same variables reach /bin/true either way (checked once, not timed).
diff <("$bin" run --execution-id bench --clean-env -- /usr/bin/env | grep -E '^(PLAIN|SECRET)_' | sort) \
     <(printf '%s\n' "${vars[@]}" | sort) >/dev/null || { echo "variables differ" >&2; exit 1; }

# The baseline gets a home of its own, beside this one (its store schema may be older).
basehome=$work/basehome
if [ -n "$baseline" ]; then
    STIGMER_HOME=$basehome "$baseline" key init 2>/dev/null
    STIGMER_HOME=$basehome bench_context "$baseline"
fi

runs=${RUNS:-500}
extra=()
[ -n "$baseline" ] && extra=(-n "baseline run --execution-id (50 vars, 20 secret)" "$baseline run --home $basehome --execution-id bench -- /bin/true")
hyperfine -N --warmup 50 --runs "$runs" --export-markdown "$work/result.md" --export-json "$work/result.json" \
    -n "env -i (50 vars) /bin/true" "env -i ${vars[*]} /bin/true" \
    -n "stigmer-exec run --execution-id (50 vars, 20 secret)" "$bin run --execution-id bench -- /bin/true" \
    -n "stigmer-exec run --execution-id --no-isolation" "$bin run --execution-id bench --no-isolation -- /bin/true" \
    "${extra[@]}"
cat "$work/result.md"
if [ -n "$baseline" ]; then
    # Interleaved too: hyperfine's blocks can drift apart on a shared machine.
    benchmarks/paired.py "${ROUNDS:-300}" "env -i=env -i ${vars[*]} /bin/true" \
        "stigmer-exec=$bin run --execution-id bench -- /bin/true" \
        "stigmer-exec --no-isolation=$bin run --execution-id bench --no-isolation -- /bin/true" \
        "baseline=$baseline run --home $basehome --execution-id bench -- /bin/true"
fi
python3 - "$work/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
base = r[0]["median"]
print()
for x in r[1:]:
    print(f"median: {x['command']}: {x['median']*1000:.3f} ms, {x['median']/base:.2f}x env -i ({base*1000:.3f} ms)")
PY
