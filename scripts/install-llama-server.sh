#!/usr/bin/env bash
# Build llama.cpp's own OpenAI-compatible server (llama-server) from the llama-cpp-python source package (the version
# pinned in requirements-llm.txt, downloaded once into CACHE) and install it as PREFIX/bin/llama-server. Unlike
# llama-cpp-python's Python server, which answers one request at a time, it decodes several sequences at once
# (parallel slots): on a 2-core CPU with SmolLM2-135M, 134 tokens/s with one slot against the Python server's 80,
# 175 with four (docs/results.md). Built once into CACHE (about 6 minutes on 2 cores), copied from there afterwards.
# Portable build (GGML_NATIVE=OFF), as for the wheel. Without cmake or a C++ compiler nothing is built, and the
# local LLM falls back to llama-cpp-python's server.
# usage: scripts/install-llama-server.sh PYTHON PREFIX CACHE
set -euo pipefail
cd "$(dirname "$0")/.."
python="$1" prefix="$2" cache="$3"
version="$(grep -E '^llama-cpp-python' requirements-llm.txt)"
version="${version##*==}"
built="$cache/llama-server-$version/llama-server"
target="$prefix/bin/llama-server"
if [ ! -x "$built" ]; then
  if ! command -v cmake >/dev/null 2>&1 || ! command -v c++ >/dev/null 2>&1; then
    echo "no cmake or C++ compiler: llama-server not built; the local LLM uses llama-cpp-python's server" >&2
    exit 0
  fi
  sdist="$(bash scripts/llama-sdist.sh "$python" "$cache")"
  echo "Building llama.cpp's llama-server $version into $(dirname "$built") (once; takes about 6 minutes)"
  staging="$(mktemp -d)"
  trap 'rm -rf "$staging"' EXIT
  tar -xzf "$sdist" -C "$staging" --strip-components=3 "llama_cpp_python-$version/vendor/llama.cpp"
  cmake -S "$staging" -B "$staging/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON >"$staging/cmake.log" 2>&1 \
    && cmake --build "$staging/build" --target llama-server -j "$(nproc)" >"$staging/build.log" 2>&1 \
    || { echo "llama-server did not build (see below); the local LLM uses llama-cpp-python's server" >&2
         tail -n 20 "$staging"/build.log "$staging"/cmake.log >&2 2>/dev/null || true; exit 0; }
  mkdir -p "$(dirname "$built")"
  cp "$staging/build/bin/llama-server" "$built.partial"
  mv "$built.partial" "$built"
fi
if ! cmp -s "$built" "$target" 2>/dev/null; then
  mkdir -p "$(dirname "$target")"
  cp "$built" "$target"
  echo "llama.cpp's llama-server installed into $target"
fi
