#!/usr/bin/env bash
# Regenerates the gRPC client in src/stigmer_exec/v1/ from
# Protos/stigmer/exec/v1/execution_context.proto (commit the result: installing the package
# never runs protoc). Needs grpcio-tools — the version integration/requirements.txt pins,
# so the code matches what the integration tests generate (same descriptor, same file name).
set -euo pipefail
cd "$(dirname "$0")"
proto_dir=../../Protos/stigmer/exec/v1
out=${OUT:-src/stigmer_exec/v1}  # OUT=DIR: elsewhere (the tests compare)
python3 -c 'import grpc_tools' 2>/dev/null || { echo "needs grpcio-tools: pip install -r ../../integration/requirements.txt" >&2; exit 1; }
rm -f "$out"/execution_context_pb2*.py "$out"/execution_context_pb2*.pyi
python3 -m grpc_tools.protoc -I"$proto_dir" --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    "$proto_dir/execution_context.proto"
# grpcio-tools writes a top-level import; inside a package it must be relative.
sed -i 's/^import execution_context_pb2 as /from . import execution_context_pb2 as /' "$out/execution_context_pb2_grpc.py"
echo "generated: $(cd "$out" && ls execution_context_pb2* | tr '\n' ' ')"
