"""Dataset store, token-classification fine-tuning and evaluation (DocumentAnnotated -> ModelPublished)."""

__version__ = "0.1.0"
