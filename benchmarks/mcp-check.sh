#!/usr/bin/env bash
# Placeholder resolution at scale: `stigmer-exec mcp check` on a 1 MB mcpServers config
# holding 10,000 placeholders (whole process: parse, look up the context, check every
# field), against `envsubst` on the same file with the same variables exported.
# Usage: benchmarks/mcp-check.sh [BINARY]   (default: dist/stigmer-exec)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-dist/stigmer-exec}")
command -v hyperfine >/dev/null || { echo "needs hyperfine: apt-get install -y hyperfine" >&2; exit 1; }
command -v envsubst >/dev/null || { echo "needs envsubst: apt-get install -y gettext-base" >&2; exit 1; }

. benchmarks/common.sh
as_installed "$bin"
bench_vars_context

python3 - "$work/config.json" <<'PY'
import json, sys
servers = {}
count = 0
for s in range(100):
    args = []
    for a in range(100):
        # ~100 bytes per argument, one placeholder each: 10,000 in all, ~1 MB.
        args.append(f"--option-{a}=prefix-" + "x" * 60 + f"-${{VAR_{(s * 100 + a) % 100}}}-suffix")
        count += 1
    servers[f"server-{s}"] = {"command": "tool", "args": args}
json.dump({"mcpServers": servers}, open(sys.argv[1], "w"), indent=1)
print(f"{count} placeholders")
PY
ls -l "$work/config.json" | awk '{print $5, "bytes"}'
set -a; . "$work/vars.env"; set +a

"$bin" mcp check --execution-id bench --config "$work/config.json" >/dev/null
# Both through the same shell (envsubst reads stdin), so the comparison is fair.
hyperfine --warmup 3 --runs "${RUNS:-30}" --export-markdown "$work/result.md" \
    -n "stigmer-exec mcp check (10,000 placeholders, 1 MB)" "$bin mcp check --execution-id bench --config $work/config.json >/dev/null" \
    -n "envsubst (same file)" "envsubst < $work/config.json >/dev/null"
cat "$work/result.md"
