#!/usr/bin/env bash
# libFuzzer harnesses (Fuzz/, FUZZING.md), in their own build folder.
#   scripts/fuzz.sh build [HARNESS…]          build (all by default)
#   scripts/fuzz.sh run SECONDS [HARNESS…]    each for SECONDS, one after another
#   scripts/fuzz.sh smoke                      CI: build all in debug, replay each corpus, fuzz briefly
# New inputs go to .build-fuzz/corpus/<harness> (the committed seeds stay small); crashes
# to .build-fuzz/artifacts/<harness>/. One process at a time: the machines have 2 cores.
# FUZZ_FLAGS adds libFuzzer flags (e.g. -runs=1000000); FUZZ_SCRATCH moves the build folder.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/opt/swift/usr/bin"

ALL=(placeholders envfile json yaml resources mcpconfig sealed keyfile frame arguments seccomp kube)
SMOKE=(${FUZZ_SMOKE_HARNESSES:-${ALL[*]}})
SCRATCH=${FUZZ_SCRATCH:-.build-fuzz}
# The long runs are optimised; the smoke builds in debug (-Onone), with the same sanitizers:
# a clean release build of BoringSSL under ASan and of NIO for `kube` is past CI's budget.
CONFIG=release

build() {
    # SwiftPM's own --sanitize=fuzzer also compiles each harness as a library (libFuzzer
    # supplies main) and keeps debug builds from renaming its entry point. swiftc keeps only
    # the last -sanitize= it is given, and SwiftPM passes fuzzer and address separately
    # (coverage would be lost): name both in one flag as well.
    local flags=(-c "$CONFIG" --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address --scratch-path "$SCRATCH")
    if [ "$*" = "${ALL[*]}" ]; then
        # In fuzz mode the package holds only the harnesses and what they import: one plan
        # builds all twelve, both cores busy across them.
        STIGMER_FUZZ=1 swift build "${flags[@]}"
    else
        for h in "$@"; do STIGMER_FUZZ=1 swift build "${flags[@]}" --product "fuzz-$h"; done
    fi
}

# run HARNESS SECONDS [libFuzzer flags…]
run() {
    local h=$1 seconds=$2; shift 2
    mkdir -p "$SCRATCH/corpus/$h" "$SCRATCH/artifacts/$h"
    local dict=()
    [ -f "Fuzz/dict/$h.dict" ] && dict=(-dict="Fuzz/dict/$h.dict")
    echo "== fuzz-$h for ${seconds}s"
    # Swift's own backtracer trips ASan inside its crash handler: libFuzzer reports the trap.
    SWIFT_BACKTRACE=enable=no "$SCRATCH/$CONFIG/fuzz-$h" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
        -print_final_stats=1 -artifact_prefix="$SCRATCH/artifacts/$h/" "${dict[@]}" ${FUZZ_FLAGS:-} "$@" \
        "$SCRATCH/corpus/$h" "Fuzz/corpus/$h"
}

case "${1:-}" in
    build) shift; build "${@:-${ALL[@]}}" ;;
    run)
        seconds=${2:?seconds}; shift 2
        harnesses=("${@:-${ALL[@]}}")
        build "${harnesses[@]}"
        for h in "${harnesses[@]}"; do run "$h" "$seconds"; done ;;
    smoke)
        CONFIG=debug
        build "${SMOKE[@]}"
        for h in "${SMOKE[@]}"; do
            # A fresh work folder: the committed corpus is replayed, then a few seconds of fuzzing.
            rm -rf "$SCRATCH/corpus/$h"
            log="$SCRATCH/smoke-$h.log"
            if ! run "$h" "${FUZZ_SMOKE_SECONDS:-5}" >"$log" 2>&1; then
                tail -40 "$log" >&2
                echo "fuzz-$h failed: the input is in $SCRATCH/artifacts/$h/" >&2
                exit 1
            fi
            # A binary whose own main ran instead of libFuzzer's also exits 0: ask for its report.
            if ! runs=$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log") || ! cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1); then
                tail -40 "$log" >&2
                echo "fuzz-$h did not run under libFuzzer (no report in $log)" >&2
                exit 1
            fi
            echo "fuzz-$h: $runs, $cov"
        done ;;
    *) sed -n '2,7p' "$0" >&2; exit 64 ;;
esac
