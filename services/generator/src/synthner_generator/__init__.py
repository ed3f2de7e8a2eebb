"""Synthetic clinical note generator (GenerationRequested -> NoteGenerated)."""

__version__ = "0.1.0"
