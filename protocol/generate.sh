#!/usr/bin/env bash
# Regenerates protocol/service_protocol_pb2.py (+ .pyi) from service_protocol.proto.
#
# Needs grpcio-tools, a dev-only tool (never a runtime dependency). Its bundled
# protoc must not be newer than the protobuf runtime that imports the result:
# grpcio-tools 1.85.x emits gencode that protobuf >= 7.34 accepts. Keep it out of
# the project's environment so it cannot move the protobuf runtime:
#   python -m venv /tmp/protogen && /tmp/protogen/bin/pip install grpcio-tools==1.85.1
#   PROTOC_PYTHON=/tmp/protogen/bin/python protocol/generate.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python_bin="${PROTOC_PYTHON:-python}"
"$python_bin" -m grpc_tools.protoc \
    --proto_path="$here" \
    --python_out="$here" \
    --pyi_out="$here" \
    "$here/service_protocol.proto"
echo "generated $here/service_protocol_pb2.py and .pyi"
