#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` (the bench peer of bench/llm/run.py --peer-url) from the
# llama.cpp that kaip's engine runs: the one vendored in the llama-cpp-python sdist of the version
# pinned in requirements.lock. Idempotent: a built binary is reused; the sdist is downloaded once.
# Output (not tracked): ${KAIP_BENCH_CACHE:-~/.cache/kaip-bench}/llama-server-<version>/bin/llama-server
# Usage: bench/llm/build_llama_server.sh [JOBS]   (default 2; runs under nice -n 19)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
JOBS="${1:-2}"
VERSION="$(sed -n 's/^llama-cpp-python==\([0-9.]*\).*/\1/p' "$ROOT/requirements.lock")"
if [ -z "$VERSION" ]; then
  echo "build_llama_server.sh: no 'llama-cpp-python==X' pin in $ROOT/requirements.lock" >&2
  exit 2
fi
CACHE="${KAIP_BENCH_CACHE:-$HOME/.cache/kaip-bench}"
OUT="$CACHE/llama-server-$VERSION"
BIN="$OUT/bin/llama-server"
if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$OUT"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY=python3
SDIST="$(ls "$OUT"/llama_cpp_python-"$VERSION".tar.gz 2>/dev/null || true)"
if [ -z "$SDIST" ]; then
  nice -n 19 "$PY" -m pip download --quiet --no-deps --no-binary :all: \
    "llama-cpp-python==$VERSION" -d "$OUT" >&2
  SDIST="$OUT/llama_cpp_python-$VERSION.tar.gz"
fi
SRC="$OUT/src"
if [ ! -f "$SRC/vendor/llama.cpp/CMakeLists.txt" ]; then
  rm -rf "$SRC" && mkdir -p "$SRC"
  tar -xzf "$SDIST" -C "$SRC" --strip-components=1
fi
start=$(date +%s)
nice -n 19 cmake -S "$SRC/vendor/llama.cpp" -B "$OUT/build" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >&2
nice -n 19 cmake --build "$OUT/build" --target llama-server -j "$JOBS" >&2
mkdir -p "$OUT/bin"
cp "$OUT/build/bin/llama-server" "$BIN"
echo "build_llama_server.sh: llama.cpp of llama-cpp-python $VERSION built in $(( $(date +%s) - start )) s" >&2
echo "$BIN"
