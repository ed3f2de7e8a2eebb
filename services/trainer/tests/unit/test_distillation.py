"""The soft-label term of distillation: what it reduces to, what it ignores."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from synthner_trainer.distillation import TeacherMismatchError, soft_target_loss


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Student logits (2 windows x 6 tokens x 3 tags) and labels with ignored positions (-100)."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 6, 3, generator=generator)
    labels = torch.tensor([[-100, 0, 1, 2, -100, -100], [-100, 1, -100, 0, 0, -100]])
    return logits, labels


def certain(labels: torch.Tensor, tags: int = 3, margin: float = 200.0) -> torch.Tensor:
    """Teacher logits that put all probability on ``labels`` (ignored positions: on tag 0)."""
    return F.one_hot(labels.clamp(min=0), tags).float() * margin


def test_a_certain_teacher_gives_the_cross_entropy_of_its_hard_labels() -> None:
    student, labels = batch()
    hard = F.cross_entropy(student.reshape(-1, 3), labels.reshape(-1), ignore_index=-100)
    assert torch.allclose(soft_target_loss(student, certain(labels), labels), hard, atol=1e-5)


def test_ignored_positions_do_not_count() -> None:
    student, labels = batch()
    teacher = torch.randn(2, 6, 3)
    changed = student.clone()
    changed[labels == -100] += torch.randn_like(changed[labels == -100]) * 10
    assert torch.allclose(soft_target_loss(student, teacher, labels), soft_target_loss(changed, teacher, labels))


def test_a_student_that_matches_the_teacher_pays_nothing_at_any_temperature() -> None:
    student, labels = batch()
    for temperature in (0.5, 1.0, 2.0, 4.0):
        assert float(soft_target_loss(student, student.clone(), labels, temperature)) == pytest.approx(0.0, abs=1e-6)
    assert float(soft_target_loss(student, batch(1)[0], labels, 2.0)) > 0.01


def test_the_soft_term_pulls_the_student_toward_the_teacher_distribution() -> None:
    """Gradient steps on the soft term alone move the student's probabilities to a doubtful teacher's, not to its
    argmax: the doubt is what hard labels throw away."""
    _, labels = batch()
    teacher = torch.log(torch.tensor([0.6, 0.3, 0.1])).expand(2, 6, 3).clone()
    student = torch.zeros(2, 6, 3, requires_grad=True)
    optimiser = torch.optim.SGD([student], lr=1.0)
    for _ in range(300):
        optimiser.zero_grad()
        soft_target_loss(student, teacher, labels).backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    probabilities = student.detach().softmax(-1)[labels != -100]
    assert torch.allclose(probabilities, torch.tensor([0.6, 0.3, 0.1]).expand_as(probabilities), atol=1e-2)


def test_logits_of_another_shape_are_refused() -> None:
    student, labels = batch()
    with pytest.raises(TeacherMismatchError, match="do not match"):
        soft_target_loss(student, torch.zeros(2, 6, 4), labels)
