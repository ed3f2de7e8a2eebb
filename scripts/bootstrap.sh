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
declare -A extras=([shared]="[eval,model]")  # optional extras the development environment needs
stamp=.venv/.synthner-installed
inputs=(requirements-dev.txt constraints.txt)
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
if [ "$fresh" = 1 ]; then
  editable=()
  for package in "${packages[@]}"; do editable+=(-e "$package${extras[$package]:-}"); done
  echo "Installing ${packages[*]} (editable) and the dev tools into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt "${editable[@]}" -r requirements-dev.txt
  touch "$stamp"
fi
