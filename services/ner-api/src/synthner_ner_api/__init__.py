"""HTTP NER API serving the published token-classification model."""

__version__ = "0.1.0"
