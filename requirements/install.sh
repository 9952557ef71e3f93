#!/usr/bin/env bash
# Installs the project's pinned stack into the Python environment of $1 (a python executable).
# One recipe for `make install` and the Docker images. Usage: install.sh PYTHON [train]
# The `train` argument adds the offline-stage extras (VisualDL, matplotlib, ONNX export tools).
set -euo pipefail
PY="$1"
WITH_TRAIN="${2:-}"
HERE="$(cd "$(dirname "$0")" && pwd)"
PIP=("$PY" -m pip install --disable-pip-version-check --no-input -q)

"${PIP[@]}" --upgrade pip==25.3
"${PIP[@]}" -r "$HERE/base.txt"
if [ "$WITH_TRAIN" = "train" ]; then
  "${PIP[@]}" -r "$HERE/train.txt" -c "$HERE/base.txt"
  # ONNX export tools share Paddle Serving's protobuf 3.20 pin (see onnx.txt).
  "${PIP[@]}" -r "$HERE/onnx.txt" -c "$HERE/base.txt"
fi
"${PIP[@]}" --no-deps -r "$HERE/serving-nodeps.txt"
# paddle-serving-client 0.9.0 ships only a cp39 wheel; the pipeline imports only its pure-Python
# parts, so it is unpacked into site-packages as-is and its unused 175 MB brpc client library dropped.
PURELIB="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"${PIP[@]}" --no-deps --upgrade --target "$PURELIB" --python-version 3.9 --implementation cp \
  --only-binary=:all: paddle-serving-client==0.9.0
find "$PURELIB/paddle_serving_client" -name 'serving_client*.so' -delete
