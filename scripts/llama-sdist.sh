#!/usr/bin/env bash
# Print the path of the llama-cpp-python source package (the version pinned in requirements-llm.txt) in CACHE,
# downloading it once with pip. llama.cpp's GGUF converter and its llama-server come from its vendor/llama.cpp.
# usage: scripts/llama-sdist.sh PYTHON CACHE
set -euo pipefail
cd "$(dirname "$0")/.."
python="$1" cache="$2"
version="$(grep -E '^llama-cpp-python' requirements-llm.txt)"
version="${version##*==}"
sdist="$cache/llama_cpp_python-$version.tar.gz"
if [ ! -f "$sdist" ]; then
  mkdir -p "$cache"
  echo "Downloading the llama-cpp-python $version source package into $cache" >&2
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: -d "$cache" \
    "llama-cpp-python==$version" >&2
fi
echo "$sdist"
