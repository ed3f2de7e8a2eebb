"""Model hubs are never reached: called once where a process starts (a service's ``run_service``, the CLI's ``main``).

Every model load already passes ``local_files_only=True``; this is the second lock, for library code that would look
a file up on a hub by itself. Deployments set the same variables in their images and manifests; a value set there
wins. Nothing is changed at import time: a library or a test that imports synthner keeps its own environment.
"""

from __future__ import annotations

import os
import sys

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")


def stay_offline() -> None:
    """Turn the Hugging Face libraries' offline mode on for this process unless its environment already decides."""
    for name in OFFLINE_VARIABLES:
        os.environ.setdefault(name, "1")
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and os.environ["HF_HUB_OFFLINE"].strip().upper() in {"1", "ON", "YES", "TRUE"}:
        # huggingface_hub reads the variable once, at its import: a process whose entry point imported it already
        # (a service's root imports its model code) gets the switch set directly.
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
