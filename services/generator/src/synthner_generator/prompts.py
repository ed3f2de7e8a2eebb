"""Versioned prompt templates, loaded by name and version: ``prompts/<name>/<version>/<language>/<note_type>.jinja``.

A deployment can add or override templates with a directory of the same layout (``prompt_dir``). An unknown name,
version, language or note type is a :class:`UnknownPromptError` that lists what exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jinja2

from synthner_shared.contracts import Mention, PromptRef

BUILT_IN = Path(__file__).with_name("prompts")
Attributes = dict[str, str | int | float | list[str]]


class UnknownPromptError(ValueError):
    """The requested template does not exist; the message says what does."""


class PromptCatalog:
    """The templates of the built-in directory and, searched first, of an extra one."""

    def __init__(self, extra_dir: Path | None = None) -> None:
        self._roots = [d for d in (extra_dir, BUILT_IN) if d is not None]
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(root) for root in self._roots]),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(enabled_extensions=(), default_for_string=False, default=False),
            keep_trailing_newline=False,
            trim_blocks=False,
        )

    def _children(self, *parts: str) -> set[str]:
        names: set[str] = set()
        for root in self._roots:
            folder = root.joinpath(*parts)
            if folder.is_dir():
                names.update(p.stem if p.is_file() else p.name for p in folder.iterdir() if not p.name.startswith("_"))
        return names

    def languages(self, prompt: PromptRef) -> set[str]:
        return self._children(prompt.name, prompt.version)

    def note_types(self, prompt: PromptRef, language: str) -> set[str]:
        return self._children(prompt.name, prompt.version, language)

    def check(self, prompt: PromptRef, language: str, note_types: Sequence[str]) -> None:
        """Raise :class:`UnknownPromptError` unless a template exists for the language and every note type."""
        versions = self._children(prompt.name)
        if not versions:
            raise UnknownPromptError(f"unknown prompt template {prompt.name!r} (known: {sorted(self._children())})")
        if prompt.version not in versions:
            raise UnknownPromptError(
                f"prompt template {prompt.name!r} has no version {prompt.version!r} (known: {sorted(versions)})"
            )
        languages = self.languages(prompt)
        if language not in languages:
            raise UnknownPromptError(
                f"prompt template {prompt.name}/{prompt.version} has no language {language!r} "
                f"(known: {sorted(languages)})"
            )
        missing = sorted(set(note_types) - self.note_types(prompt, language))
        if missing:
            raise UnknownPromptError(
                f"prompt template {prompt.name}/{prompt.version}/{language} has no note type(s) {missing} "
                f"(known: {sorted(self.note_types(prompt, language))})"
            )

    def render(
        self,
        prompt: PromptRef,
        language: str,
        note_type: str,
        attributes: Attributes,
        *,
        requested: Sequence[Mention] = (),
        prefix: str = "",
    ) -> str:
        """The prompt text for one note. Call :meth:`check` first for a clear error on an unknown template."""
        path = f"{prompt.name}/{prompt.version}/{language}/{note_type}.jinja"
        try:
            template = self._env.get_template(path)
        except jinja2.TemplateNotFound:
            raise UnknownPromptError(f"no prompt template {path}") from None
        return template.render(attributes=attributes, requested=list(requested), prefix=prefix).strip()
