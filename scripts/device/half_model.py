"""Copy a Hugging Face model folder with its floating-point weights stored as fp16 (half the bytes).

Used by ``prepare-gpu-check.sh`` so the default base model fits the device tool's 64 MiB: the trainer loads any
checkpoint as fp32 (``synthner_trainer.training.load_for_training``), so a run from the copy starts from the same
weights rounded to fp16 (about 3 significant digits).

    python scripts/device/half_model.py OUT [--source DIR]   (default source: the packaged all-MiniLM-L6-v2)
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from synthner_trainer.base_model import default_base_model


def write_half_model(source: Path, out: Path) -> Path:
    """Write ``out`` (must not exist): ``source``'s files, its ``*.safetensors`` with fp32 tensors cast to fp16."""
    weights = sorted(source.glob("*.safetensors"))
    if not weights:
        raise ValueError(f"{source} has no *.safetensors weights")
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("*.safetensors", ".git*"))
    for path in weights:
        tensors = load_file(path)
        halved = {k: t.to(torch.float16) if t.dtype == torch.float32 else t for k, t in tensors.items()}
        save_file(halved, out / path.name, metadata={"format": "pt"})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--source", type=Path, help="model folder (default: the packaged all-MiniLM-L6-v2)")
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists")
    out = write_half_model(args.source or default_base_model(), args.out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
