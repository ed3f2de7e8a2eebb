"""Quality filters: nothing unusable passes; nothing is cut, except a truncated reply's unfinished last sentence where
the settings keep whole sentences."""

from __future__ import annotations

import pytest

from synthner_generator.llm import Completion
from synthner_generator.pipeline import compose
from synthner_generator.quality import QualityBounds, check_reply, reject_reason, whole_sentences

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


WHOLE = QualityBounds(min_chars=20, max_chars=200, truncated="whole_sentences")


@pytest.mark.parametrize(
    ("text", "whole"),
    [
        ("Seen today. Fever for 3 days. Started amox", "Seen today. Fever for 3 days."),
        ('He said "no pain." Then the pati', 'He said "no pain."'),
        ("Diagnosis (acute otitis media.) Plan: fol", "Diagnosis (acute otitis media.)"),
        ("Medications:\n- aspirin 81 mg daily\n- metfor", "Medications:\n- aspirin 81 mg daily"),
        ("Temperature 38.5 degrees and rising wi", None),
        ("No sentence ends here at all", None),
    ],
)
def test_whole_sentences_cuts_after_the_last_complete_sentence_or_line(text: str, whole: str | None) -> None:
    assert whole_sentences(text) == whole


def test_a_truncated_reply_keeps_its_whole_sentences_only_where_the_settings_say_so() -> None:
    text = GOOD + " Follow-up in two weeks with the family docto"
    completion = Completion(text, "length")
    assert check_reply(completion, text, BOUNDS).rule == "truncated"
    kept = check_reply(completion, text, WHOLE)
    assert (kept.text, kept.rule, kept.cut) == (GOOD, None, True)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("Short one. And then the rest of it was cut", "too_short"),
        ("no sentence end in this truncated reply", "truncated"),
    ],
)
def test_a_cut_reply_still_passes_every_other_check(text: str, rule: str) -> None:
    assert check_reply(Completion(text, "length"), text, WHOLE).rule == rule


def test_a_finished_reply_is_never_cut() -> None:
    text = GOOD + " And a last line without an end"
    assert check_reply(Completion(text, "stop"), text, WHOLE) == check_reply(Completion(text, "stop"), text, BOUNDS)
    assert check_reply(Completion(text, "stop"), text, WHOLE).text == text


def test_compose_puts_the_prefix_before_a_continuation_once() -> None:
    assert compose("Paciente de 70", " años con disnea.") == "Paciente de 70 años con disnea."
    assert compose("Paciente de 70", "Paciente de 70 años.") == "Paciente de 70 años."
    assert compose("", "  text ") == "text"
