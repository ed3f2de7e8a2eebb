"""Annotator backends behind one port, :class:`~synthner_annotator.backends.base.Annotator`."""
