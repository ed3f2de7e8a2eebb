"""The synthner command line (``synthner ...`` or ``python -m synthner ...``)."""

__version__ = "0.1.0"
