#!/usr/bin/env bash
# Linear parsing: `stigmer-exec mcp check` on minified (one-line) mcpServers configs of
# 1×, 10× and 100× size (~100 KB, ~1 MB, ~10 MB; one placeholder per ~100 bytes), and on
# one argument holding 1,000 / 10,000 / 100,000 placeholders. A quadratic step shows as
# ~100× per 10× of input; linear is ~10×.
# Usage: benchmarks/parser-scaling.sh [BINARY]   (default: dist/stigmer-exec)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-dist/stigmer-exec}")
command -v hyperfine >/dev/null || { echo "needs hyperfine: apt-get install -y hyperfine" >&2; exit 1; }
. benchmarks/common.sh
bench_vars_context

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
for scale, servers in (("1x", 10), ("10x", 100), ("100x", 1000)):
    config = {f"server-{s}": {"command": "tool", "args": [
        f"--option-{a}=prefix-" + "x" * 60 + f"-${{VAR_{(s * 100 + a) % 100}}}-suffix" for a in range(100)]}
        for s in range(servers)}
    with open(f"{work}/wide-{scale}.json", "w") as f:
        json.dump({"mcpServers": config}, f, separators=(",", ":"))  # one line
for scale, count in (("1x", 1000), ("10x", 10000), ("100x", 100000)):
    value = "-".join(f"${{VAR_{i % 100}}}" for i in range(count))
    with open(f"{work}/dense-{scale}.json", "w") as f:
        json.dump({"mcpServers": {"s": {"command": "tool", "args": [value]}}}, f, separators=(",", ":"))
PY
ls -l "$work"/*.json | awk '{print $5, $9}'
args=()
for kind in wide dense; do
    for scale in 1x 10x 100x; do
        "$bin" mcp check --execution-id bench --config "$work/$kind-$scale.json" >/dev/null
        args+=(-n "$kind $scale" "$bin mcp check --execution-id bench --config $work/$kind-$scale.json")
    done
done
hyperfine -N --warmup 1 --runs "${RUNS:-5}" --export-markdown "$work/result.md" "${args[@]}" >/dev/null
cat "$work/result.md"
