"""Learning-curve subsets are nested, reproducible and never empty."""

from __future__ import annotations

import pytest

from synthner_shared.documents import Document
from synthner_trainer.learning_curve import nested_subsets

DOCS = [Document(id=str(i), text=f"note {i}") for i in range(20)]


def test_subsets_grow_and_contain_each_other() -> None:
    small, medium, full = nested_subsets(DOCS, [0.01, 0.5, 1.0], seed=3)
    assert (len(small), len(medium), len(full)) == (1, 10, 20)
    assert small == medium[:1]
    assert medium == full[:10]
    assert nested_subsets(DOCS, [0.5], seed=3)[0] == medium


def test_fractions_outside_zero_to_one_are_refused() -> None:
    with pytest.raises(ValueError, match="fractions"):
        nested_subsets(DOCS, [0.0, 1.5], seed=1)
