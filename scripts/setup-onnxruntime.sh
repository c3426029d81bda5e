#!/usr/bin/env bash
# Installs ONNX Runtime's shared library from the `onnxruntime` wheel on PyPI into
# .cardiostream/ and links it at .cardiostream/lib/libonnxruntime.so, where the
# cardiostream binary finds it without any environment variable.
#   scripts/setup-onnxruntime.sh          the runtime library only
#   scripts/setup-onnxruntime.sh --train  also numpy + onnx, to retrain bundled models
# Idempotent. Override the version with ONNXRUNTIME_VERSION.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ver=${ONNXRUNTIME_VERSION:-1.32.0}
home="$root/.cardiostream"
venv="$home/venv"
link="$home/lib/libonnxruntime.so"
want_train=${1:-}

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" 2>/dev/null || {
    echo "setup-onnxruntime: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
    exit 1
  }
fi
pkgs=()
"$venv/bin/python" -c "import onnxruntime, sys; sys.exit(onnxruntime.__version__ != '$ver')" 2>/dev/null || pkgs+=("onnxruntime==$ver")
if [ "$want_train" = "--train" ]; then
  "$venv/bin/python" -c "import numpy, onnx" 2>/dev/null || pkgs+=("numpy" "onnx")
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "setup-onnxruntime: pip install ${pkgs[*]} into $venv" >&2
  "$venv/bin/pip" install --disable-pip-version-check -q "${pkgs[@]}"
fi
so=$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n 1)
[ -n "$so" ] || { echo "setup-onnxruntime: libonnxruntime.so.* not found in the wheel" >&2; exit 1; }
mkdir -p "$home/lib"
ln -sfn "$so" "$link"
echo "setup-onnxruntime: $link -> $so" >&2
