"""Builds the configured annotator backend."""

from __future__ import annotations

from collections.abc import Sequence

from synthner_annotator.backends.base import Annotator
from synthner_annotator.backends.encoder import EncoderAnnotator, EncoderSettings
from synthner_annotator.backends.ensemble import EnsembleAnnotator, EnsembleSettings
from synthner_annotator.backends.lexicon import LexiconAnnotator, LexiconSettings
from synthner_annotator.backends.llm import LLMAnnotator, LLMAnnotatorSettings


def build_annotator(
    spec: LLMAnnotatorSettings | LexiconSettings | EncoderSettings | EnsembleSettings, labels: Sequence[str]
) -> Annotator:
    """The annotator for ``spec``; each LLM backend opens its own HTTP client (close it with ``aclose``), an encoder
    backend loads its model here (torch is imported only then)."""
    if isinstance(spec, LLMAnnotatorSettings):
        return LLMAnnotator(spec, labels)
    if isinstance(spec, LexiconSettings):
        return LexiconAnnotator(spec, labels)
    if isinstance(spec, EncoderSettings):
        return EncoderAnnotator(spec, labels)
    members = [(member.weight, build_annotator(member.annotator, labels)) for member in spec.members]
    return EnsembleAnnotator(spec, members)
