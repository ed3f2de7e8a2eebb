"""Quality filters: nothing unusable passes, nothing is cut."""

from __future__ import annotations

import pytest

from synthner_generator.llm import Completion
from synthner_generator.pipeline import compose
from synthner_generator.quality import QualityBounds, reject_reason

BOUNDS = QualityBounds(min_chars=20, max_chars=200)
GOOD = "Patient admitted with pneumonia, treated with amoxicillin, discharged home."


@pytest.mark.parametrize(
    ("text", "finish", "rule"),
    [
        ("   ", "stop", "empty"),
        (GOOD, "length", "truncated"),
        ("I'm sorry, but I cannot write medical records.", "stop", "refusal"),
        ("Lo siento, no puedo ayudar con eso en este caso.", "stop", "refusal"),
        ("Tyvärr kan jag inte skriva en sådan journalanteckning.", "stop", "refusal"),
        ("Short note.", "stop", "too_short"),
        (GOOD * 5, "stop", "too_long"),
        (GOOD, "stop", None),
    ],
)
def test_reject_reason(text: str, finish: str, rule: str | None) -> None:
    assert reject_reason(Completion(text, finish), text, BOUNDS) == rule  # type: ignore[arg-type]


def test_compose_puts_the_prefix_before_a_continuation_once() -> None:
    assert compose("Paciente de 70", " años con disnea.") == "Paciente de 70 años con disnea."
    assert compose("Paciente de 70", "Paciente de 70 años.") == "Paciente de 70 años."
    assert compose("", "  text ") == "text"
