"""Versioned prompt templates, loaded by name, version and language, rendered into chat messages.

Templates live beside this module as ``prompts/<name>.<version>.<language>.jinja`` and render the system message
(label definitions and guidelines come from configuration). Few-shot examples from configuration become
user/assistant message pairs, the assistant side in the design's own reply format. An unknown name or version fails
loudly at start-up; a language without a template falls back to English.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import jinja2
from pydantic import BaseModel, ConfigDict, Field

from synthner_annotator.alignment import ProposedMention, align_mentions
from synthner_annotator.errors import ConfigurationError
from synthner_shared.contracts import Mention, PromptRef

PromptDesign = Literal["json_mentions", "inline_markup"]
SUPPORTED_LANGUAGES = ("en", "es", "sv", "et")
FALLBACK_LANGUAGE = "en"

Message = dict[str, str]


class FewShotExample(BaseModel):
    """A short example note with the mentions an annotator should return for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1, max_length=4000)
    mentions: list[Mention] = Field(default_factory=list, description="In order of appearance.")
    language: str | None = Field(default=None, description="Only used for notes of this language (None: any).")


class PromptSettings(BaseModel):
    """Which template to use and what fills it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: PromptDesign = "json_mentions"
    version: str = "v1"
    definitions: dict[str, str] = Field(
        default_factory=dict, description="Label -> definition shown to the LLM; a label without one shows its name."
    )
    guidelines: list[str] = Field(default_factory=list, description="Annotation guidelines, one rule per item.")
    examples: list[FewShotExample] = Field(default_factory=list, max_length=20)


@dataclass(frozen=True)
class LabelGuide:
    name: str
    definition: str


def _template_name(name: str, version: str, language: str) -> str:
    return f"{name}.{version}.{language}.jinja"


def _environment() -> jinja2.Environment:
    folder = resources.files("synthner_annotator") / "prompts"
    sources = {item.name: item.read_text(encoding="utf-8") for item in folder.iterdir() if item.name.endswith(".jinja")}
    # Prompts are plain text for an LLM, not HTML: escaping would corrupt them.
    return jinja2.Environment(  # noqa: S701
        loader=jinja2.DictLoader(sources), undefined=jinja2.StrictUndefined, keep_trailing_newline=False
    )


def base_language(language: str) -> str:
    return language.split("-", 1)[0].lower()


def markup(text: str, spans: Sequence[tuple[int, int, str]]) -> str:
    """``text`` with ``<LABEL>…</LABEL>`` around each (sorted, non-overlapping) span."""
    pieces: list[str] = []
    position = 0
    for start, end, label in spans:
        pieces += [text[position:start], f"<{label}>", text[start:end], f"</{label}>"]
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


class PromptTemplate:
    """One prompt design at one version, for every supported language."""

    def __init__(self, settings: PromptSettings, labels: Sequence[str]) -> None:
        self.settings = settings
        self.ref = PromptRef(name=settings.name, version=settings.version)
        self.labels = list(labels)
        self._environment = _environment()
        available = self._environment.list_templates()
        if _template_name(settings.name, settings.version, FALLBACK_LANGUAGE) not in available:
            known = sorted({".".join(t.split(".")[:2]) for t in available})
            raise ConfigurationError(f"unknown prompt {settings.name} {settings.version} (known: {', '.join(known)})")
        unknown = set(settings.definitions) - set(labels)
        if unknown:
            raise ConfigurationError(f"prompt definitions for labels outside the label set: {sorted(unknown)}")
        for example in settings.examples:
            outside = {m.label for m in example.mentions} - set(labels)
            if outside:
                raise ConfigurationError(f"few-shot example with labels outside the label set: {sorted(outside)}")
        self._guides = [LabelGuide(label, settings.definitions.get(label, label)) for label in labels]
        self._systems: dict[str, str] = {}
        self._examples = [(example, self.example_reply(example)) for example in settings.examples]  # fails early

    @property
    def design(self) -> PromptDesign:
        return self.settings.name

    def system_message(self, language: str) -> str:
        if language not in self._systems:
            self._systems[language] = self._render_system(language)
        return self._systems[language]

    def _render_system(self, language: str) -> str:
        lang = base_language(language)
        if _template_name(self.settings.name, self.settings.version, lang) not in self._environment.list_templates():
            lang = FALLBACK_LANGUAGE
        template = self._environment.get_template(_template_name(self.settings.name, self.settings.version, lang))
        return template.render(labels=self._guides, guidelines=self.settings.guidelines).strip()

    def example_reply(self, example: FewShotExample) -> str:
        """What a perfect answer to ``example`` looks like in this design."""
        if self.design == "json_mentions":
            return json.dumps(
                {"mentions": [{"label": m.label, "text": m.text} for m in example.mentions]}, ensure_ascii=False
            )
        report = align_mentions(example.text, [ProposedMention(m.label, m.text) for m in example.mentions], self.labels)
        if report.dropped:
            raise ConfigurationError("a few-shot example lists mentions that are not in its text (or overlap)")
        return markup(example.text, [(s.start, s.end, s.label) for s in report.spans])

    def messages(self, text: str, language: str) -> list[Message]:
        """The chat messages asking to annotate ``text``."""
        messages: list[Message] = [{"role": "system", "content": self.system_message(language)}]
        for example, reply in self._examples:
            if example.language is None or base_language(example.language) == base_language(language):
                messages.append({"role": "user", "content": example.text})
                messages.append({"role": "assistant", "content": reply})
        messages.append({"role": "user", "content": text})
        return messages
