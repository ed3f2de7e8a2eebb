"""Vocabularies the note attributes are sampled from (one JSON file per language), and the built-in lexicon.

Diversity comes from these attributes, the sampling parameters and the per-note seed; the sampled attributes are
recorded in each note, so any note can be regenerated.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from synthner_shared.contracts import Mention

BUILT_IN = Path(__file__).with_name("vocabularies")
LEXICON_FIELDS = {"Disease": "diagnoses", "Drug": "medications", "Procedure": "procedures"}
"""Labels the built-in lexicon covers, and the vocabulary field each one is drawn from."""


class Vocabulary(BaseModel):
    """Attribute values of one language."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sex: list[str] = Field(min_length=1)
    age: tuple[int, int]
    specialty: list[str] = Field(min_length=1)
    diagnoses: list[str] = Field(min_length=1)
    medications: list[str] = Field(min_length=1)
    procedures: list[str] = Field(min_length=1)

    def sample(self, rng: random.Random) -> dict[str, str | int | float | list[str]]:
        """One patient: age, sex, specialty, 1-3 diagnoses, 1-4 medications, 0-2 procedures."""
        return {
            "age": rng.randint(*self.age),
            "sex": rng.choice(self.sex),
            "specialty": rng.choice(self.specialty),
            "diagnoses": rng.sample(self.diagnoses, k=min(len(self.diagnoses), rng.randint(1, 3))),
            "medications": rng.sample(self.medications, k=min(len(self.medications), rng.randint(1, 4))),
            "procedures": rng.sample(self.procedures, k=min(len(self.procedures), rng.randint(0, 2))),
        }

    def lexicon(self) -> list[Mention]:
        """The built-in lexicon of this language (labels of :data:`LEXICON_FIELDS`)."""
        return [
            Mention(label=label, text=text) for label, field in LEXICON_FIELDS.items() for text in getattr(self, field)
        ]


class VocabularyError(ValueError):
    pass


def load_vocabularies(extra_dir: Path | None = None) -> dict[str, Vocabulary]:
    """Built-in vocabularies by language, each replaced by ``<extra_dir>/<language>.json`` where that exists."""
    files = {p.stem: p for p in sorted(BUILT_IN.glob("*.json"))}
    if extra_dir is not None:
        files.update({p.stem: p for p in sorted(extra_dir.glob("*.json"))})
    vocabularies = {}
    for language, path in files.items():
        try:
            vocabularies[language] = Vocabulary.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (ValidationError, json.JSONDecodeError) as exc:
            raise VocabularyError(f"{path}: not a valid vocabulary ({type(exc).__name__})") from exc
    return vocabularies
