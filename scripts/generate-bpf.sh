#!/usr/bin/env bash
# Regenerates Sources/StigmerLaunch/BuiltinFilters.swift (the built-in seccomp profiles as
# precompiled BPF) from libseccomp's build of SeccompProfile.default and .strict. Commit the
# result; `swift test` fails while it differs from what libseccomp builds.
set -euo pipefail
cd "$(dirname "$0")/.."
out=Sources/StigmerLaunch/BuiltinFilters.swift
swift build --build-tests >/dev/null
STIGMER_WRITE_BPF="$PWD/$out.new" swift test --skip-build --filter builtInProgramsMatchLibseccomp >/dev/null
mv "$out.new" "$out"
echo "generated $out"
