#!/usr/bin/env bash
# Install llama.cpp's Hugging Face -> GGUF converter (convert_hf_to_gguf.py with its conversion/ and gguf-py/ modules)
# into PREFIX/share/synthner/llama.cpp, where `synthner adapt --gguf` looks for it. It is no PyPI package of its own:
# the llama-cpp-python source package ships it under vendor/llama.cpp, so that sdist (the version pinned in
# requirements-llm.txt) is downloaded once with pip into CACHE and unpacked from there. Needs nothing at run time.
# usage: scripts/install-gguf-converter.sh PYTHON PREFIX CACHE
set -euo pipefail
cd "$(dirname "$0")/.."
python="$1" prefix="$2" cache="$3"
target="$prefix/share/synthner/llama.cpp"
version="$(grep -E '^llama-cpp-python' requirements-llm.txt)"
version="${version##*==}"
[ -f "$target/convert_hf_to_gguf.py" ] && [ "$(cat "$target/VERSION" 2>/dev/null)" = "$version" ] && exit 0
sdist="$(bash scripts/llama-sdist.sh "$python" "$cache")"
root="llama_cpp_python-$version/vendor/llama.cpp"
staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT
tar -xzf "$sdist" -C "$staging" --strip-components=3 \
  "$root/convert_hf_to_gguf.py" "$root/conversion" "$root/gguf-py" "$root/LICENSE"
echo "$version" > "$staging/VERSION"
rm -rf "$target"
mkdir -p "$(dirname "$target")"
mv "$staging" "$target"
chmod -R a+rX "$target"
trap - EXIT
echo "llama.cpp's GGUF converter installed into $target"
