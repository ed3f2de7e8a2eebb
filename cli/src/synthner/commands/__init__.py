"""One module per command. Each exposes ``register(subparsers)``, which adds its parser and sets ``handler``.

Command modules import their service packages inside the handler, so ``synthner --help`` stays fast and a command
works with only its own service installed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from types import ModuleType

from synthner.commands import (
    adapt,
    annotate,
    base_model,
    convert,
    dataset,
    demo,
    documents,
    evaluate,
    generate,
    leakcheck,
    ops,
    review,
    serve,
    status,
    study,
    train,
)

COMMAND_MODULES: tuple[ModuleType, ...] = (
    demo,
    study,
    documents,
    generate,
    status,
    leakcheck,
    dataset,
    train,
    evaluate,
    adapt,
    base_model,
    annotate,
    convert,
    review,
    serve,
    ops,
)

Handler = Callable[[argparse.Namespace], int]
