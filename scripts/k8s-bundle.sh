#!/usr/bin/env bash
# Makes the bundle the Kubernetes webhook injects into pods:
#   scripts/k8s-bundle.sh LAUNCHER COMPANION OUTDIR
# → OUTDIR/stigmer-exec, OUTDIR/stigmer-exec-full and OUTDIR/lib/.
# The injected pod copies the bundle into an emptyDir mounted at /stigmer, and the app
# container may be any image: no glibc, no Swift runtime. So a dynamically linked binary
# brings every library `ldd` resolves (named by soname) and the dynamic loader in lib/,
# and is patched to use them: interpreter /stigmer/lib/<loader>, DT_RPATH /stigmer/lib
# (RPATH rather than RUNPATH: it also applies to the libraries' dependencies, and comes
# before the image's LD_LIBRARY_PATH; libraries that carry a RUNPATH get the same RPATH).
# Static binaries are copied as they are. Both are stripped: each pod holds the bundle in
# memory. glibc >= 2.34 has nss_files/nss_dns in libc, so
# name resolution needs no NSS modules.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 LAUNCHER COMPANION OUTDIR" >&2; exit 2; }
launcher=$1 companion=$2 out=$3
prefix=/stigmer  # where the bundle lives inside the container
command -v patchelf >/dev/null || { echo "k8s-bundle: patchelf is missing (apt-get install -y patchelf)" >&2; exit 1; }
for f in "$launcher" "$companion"; do [ -f "$f" ] || { echo "k8s-bundle: $f: no such file" >&2; exit 1; }; done

mkdir -p "$out/lib"

# bundle SRC NAME: copy SRC to OUTDIR/NAME, with its libraries when dynamically linked.
bundle() {
    local src=$1 dst=$out/$2 deps line name path interp
    rm -f "$dst"
    cp "$src" "$dst"
    chmod 0755 "$dst"
    # Every pod holds the bundle in memory (the emptyDir is a tmpfs): no symbols.
    strip "$dst"
    if ! deps=$(LC_ALL=C ldd "$src" 2>&1) || grep -q 'statically linked' <<<"$deps"; then
        chmod 0555 "$dst"
        echo "k8s-bundle: $2: static, copied (stripped)"
        return
    fi
    if grep -q 'not found' <<<"$deps"; then
        echo "k8s-bundle: $src: unresolved libraries:" >&2
        grep 'not found' <<<"$deps" >&2
        exit 1
    fi
    while read -r line; do  # "soname => /path/to/lib (0x…)"; the vDSO has no path
        [[ $line =~ ^([^[:space:]]+)\ =\>\ (/[^[:space:]]+) ]] || continue
        name=${BASH_REMATCH[1]} path=${BASH_REMATCH[2]}
        install -m 0555 "$(readlink -f "$path")" "$out/lib/$name"
        # a library's own RUNPATH (Swift's: $ORIGIN) comes after LD_LIBRARY_PATH: pin it too
        [ -z "$(patchelf --print-rpath "$out/lib/$name")" ] ||
            patchelf --force-rpath --set-rpath "$prefix/lib" "$out/lib/$name"
    done <<<"$deps"
    interp=$(patchelf --print-interpreter "$src")
    install -m 0555 "$(readlink -f "$interp")" "$out/lib/${interp##*/}"
    patchelf --set-interpreter "$prefix/lib/${interp##*/}" --force-rpath --set-rpath "$prefix/lib" "$dst"
    chmod 0555 "$dst"
    echo "k8s-bundle: $2: dynamic, $(grep -c ' => /' <<<"$deps") libraries + ${interp##*/}"
}

bundle "$launcher" stigmer-exec
bundle "$companion" stigmer-exec-full
