#!/usr/bin/env bash
# Installs what building and testing stigmer-exec needs, and only what is missing:
# Debian packages (when root; otherwise says what to install) and, unless called as
# `deps.sh build` (what `make release` and the Dockerfile need), the pinned Python test
# requirements and the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
purpose=${1:-test}

packages=(libseccomp-dev libsqlite3-dev libyaml-dev zlib1g-dev)
# The Kubernetes tests: a real OCI runtime, registry and image tools, and what bundles the
# launcher for an image with nothing in it.
[ "$purpose" = build ] || packages+=(strace gcc util-linux procps postgresql openssl crun patchelf busybox-static docker-registry skopeo umoci)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "deps: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "deps: missing Debian packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

if [ "$purpose" != build ] && ! python3 - <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
want = {}
for line in open("integration/requirements.txt"):
    line = line.split("#")[0].strip()
    if line:
        name, pinned = line.split("==")
        want[name] = pinned
sys.exit(0 if all(version(n) == v for n, v in want.items()) else 1)
PY
then
    echo "deps: installing integration/requirements.txt"
    python3 -m pip install -q --disable-pip-version-check -r integration/requirements.txt
fi
# The Python client as a user installs it (the tests import it; a few seconds each run).
[ "$purpose" = build ] || python3 -m pip install -q --disable-pip-version-check ./clients/python

command -v swift >/dev/null || { echo "deps: swift not found; install Swift 6.x (here: /opt/swift/usr/bin)" >&2; exit 1; }
