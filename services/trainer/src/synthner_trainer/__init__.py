"""synthner trainer: dataset store, token-classification fine-tuning, evaluation and gated model publishing.

Modules: :mod:`settings`, :mod:`store` (dataset store), :mod:`training` (fine-tuning loop), :mod:`registry`
(model versions and the promotion gate), :mod:`pipeline` (one training run end to end), :mod:`service` (the broker
binding), :mod:`report` (HTML evaluation report), :mod:`learning_curve`. Importing this package loads no torch;
:mod:`training` and :mod:`pipeline` do.
"""

__version__ = "0.1.0"
