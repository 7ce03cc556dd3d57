#!/usr/bin/env bash
# Regenerates Sources/StigmerRemote/Generated from Protos/ (commit the result; the build
# never runs protoc). Needs protoc (apt-get install -y protobuf-compiler) and builds the
# two plugins, in release, from the same package versions Package.swift names.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/opt/swift/usr/bin"
command -v protoc >/dev/null || { echo "needs protoc: apt-get install -y protobuf-compiler" >&2; exit 1; }
tools=${PLUGIN_DIR:-/tmp/stigmer-protoc-plugins}
mkdir -p "$tools"
if [ ! -x "$tools/protoc-gen-grpc-swift-2" ]; then
    rm -rf "$tools/gsp" && git clone -q -b 2.4.1 https://github.com/grpc/grpc-swift-protobuf "$tools/gsp"
    (cd "$tools/gsp" && swift build -c release --product protoc-gen-grpc-swift-2)
    cp "$tools/gsp/.build/release/protoc-gen-grpc-swift-2" "$tools/"
fi
if [ ! -x "$tools/protoc-gen-swift" ]; then
    rm -rf "$tools/sp" && git clone -q -b 1.39.0 https://github.com/apple/swift-protobuf "$tools/sp"
    (cd "$tools/sp" && swift build -c release --product protoc-gen-swift)
    cp "$tools/sp/.build/release/protoc-gen-swift" "$tools/"
fi
out=Sources/StigmerRemote/Generated
rm -f "$out"/*.swift
protoc --proto_path=Protos \
    --plugin=protoc-gen-swift="$tools/protoc-gen-swift" \
    --swift_out="$out" --swift_opt=Visibility=Public,FileNaming=DropPath \
    --plugin=protoc-gen-grpc-swift="$tools/protoc-gen-grpc-swift-2" \
    --grpc-swift_out="$out" --grpc-swift_opt=Visibility=Public,Server=true,Client=true,FileNaming=DropPath \
    Protos/stigmer/exec/v1/execution_context.proto Protos/grpc/health/v1/health.proto
echo "generated: $(ls "$out"/*.swift | xargs -n1 basename | tr '\n' ' ')"
