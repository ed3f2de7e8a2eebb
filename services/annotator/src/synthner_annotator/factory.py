"""Builds the configured annotator backend."""

from __future__ import annotations

from collections.abc import Sequence

from synthner_annotator.backends.base import Annotator
from synthner_annotator.backends.encoder import EncoderAnnotator, EncoderSettings
from synthner_annotator.backends.ensemble import EnsembleAnnotator, EnsembleSettings
from synthner_annotator.backends.lexicon import LexiconAnnotator, LexiconSettings
from synthner_annotator.backends.llm import LLMAnnotator, LLMAnnotatorSettings
from synthner_annotator.egress import EgressPolicy


def build_annotator(
    spec: LLMAnnotatorSettings | LexiconSettings | EncoderSettings | EnsembleSettings,
    labels: Sequence[str],
    egress: EgressPolicy | None = None,
) -> Annotator:
    """The annotator for ``spec``; each LLM backend opens its own HTTP client (close it with ``aclose``), an encoder
    backend loads its model here (torch is imported only then). ``egress``: which endpoints are internal and the
    leak gate notes pass before an external call (default: the built-in allow-list and no reference, so external
    endpoints are refused every note)."""
    if isinstance(spec, LLMAnnotatorSettings):
        return LLMAnnotator(spec, labels, egress=egress)
    if isinstance(spec, LexiconSettings):
        return LexiconAnnotator(spec, labels)
    if isinstance(spec, EncoderSettings):
        return EncoderAnnotator(spec, labels)
    members = [(member.weight, build_annotator(member.annotator, labels, egress)) for member in spec.members]
    return EnsembleAnnotator(spec, members)
