"""Entity annotators for synthetic notes (NoteGenerated -> DocumentAnnotated)."""

__version__ = "0.1.0"
