#!/usr/bin/env bash
# Installs the project's pinned stack into the Python environment of $1 (a python executable).
# One recipe for `make install` and the Docker images. Usage: install.sh PYTHON [train] [gpu]
# `train` adds the offline-stage extras (VisualDL, matplotlib, ONNX export tools, NNCF).
# `gpu` installs the CUDA build of Paddle (gpu.txt) in place of base.txt's CPU wheel; everything
# else in base.txt is installed unchanged (docker/Dockerfile.gpu); OpenVINO (openvino.txt) is not.
set -euo pipefail
PY="$1"
shift
WITH_TRAIN=""
WITH_GPU=""
for option in "$@"; do
  case "$option" in
    train) WITH_TRAIN=1 ;;
    gpu) WITH_GPU=1 ;;
    *) echo "install.sh: unknown option '$option' (expected: train, gpu)" >&2; exit 2 ;;
  esac
done
HERE="$(cd "$(dirname "$0")" && pwd)"
PIP=("$PY" -m pip install --disable-pip-version-check --no-input -q)

"${PIP[@]}" --upgrade pip==25.3
if [ -n "$WITH_GPU" ]; then
  "${PIP[@]}" -r "$HERE/gpu.txt"
  # base.txt minus its CPU Paddle pin: both wheels would install the same `paddle` package.
  "${PIP[@]}" -r <(grep -v '^paddlepaddle==' "$HERE/base.txt")
else
  "${PIP[@]}" -r "$HERE/base.txt"
  # The second CPU engine; the GPU image runs Paddle Inference + TensorRT only.
  "${PIP[@]}" -r "$HERE/openvino.txt" -c "$HERE/base.txt"
fi
if [ -n "$WITH_TRAIN" ]; then
  "${PIP[@]}" -r "$HERE/train.txt" -c "$HERE/base.txt"
  # ONNX export tools share base.txt's protobuf pin (see onnx.txt).
  "${PIP[@]}" -r "$HERE/onnx.txt" -c "$HERE/base.txt"
fi
"${PIP[@]}" --no-deps -r "$HERE/serving-nodeps.txt"
# paddle-serving-client 0.9.0 ships only a cp39 wheel; the pipeline imports only its pure-Python
# parts, so it is unpacked into site-packages as-is and its unused 175 MB brpc client library dropped.
PURELIB="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"${PIP[@]}" --no-deps --upgrade --target "$PURELIB" --python-version 3.9 --implementation cp \
  --only-binary=:all: paddle-serving-client==0.9.0
find "$PURELIB/paddle_serving_client" -name 'serving_client*.so' -delete
# Paddle Serving's shipped *_pb2 modules load only on protobuf 3.20; rewrite them for base.txt's
# protobuf (see regen_serving_pb2.py).
"$PY" "$HERE/regen_serving_pb2.py" "$PURELIB"
