"""Distillation: a student learns the teacher's token probabilities (soft labels), not only its hard spans.

A teacher NER model trained on the hospital's gold labels the synthetic notes; its hard spans throw away what it was
unsure about (a word at 0.55 ``B-Disease`` becomes a certain label, one at 0.45 a certain ``O``). With
``TrainingConfig.distill_from`` the trainer also runs the teacher on every training batch and adds the classic
distillation term (Hinton et al. 2015): the KL divergence from the teacher's word distributions to the student's, at
temperature ``T`` and scaled by ``T²`` so its gradients keep their size as ``T`` changes. The loss per labelled word
is ``(1 - w) · hard + w · T² · KL(p_teacher^T ‖ p_student^T)``, with ``w = distill_weight``; the hard term is the
CRF's (or cross-entropy's) on the annotated spans, as without distillation.

The teacher and the student must share the tokenizer and the tag set (the same base model, and the teacher's labels
the student's): the soft labels are read at the same sub-tokens. Anything else is refused before training starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForTokenClassification, AutoTokenizer

from synthner_shared.ner.encoding import IGNORE_INDEX


class TeacherMismatchError(ValueError):
    """The teacher cannot give soft labels for this student (another tokenizer or another tag set)."""


def soft_target_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Mean over labelled positions (``labels != -100``) of ``T² · KL(softmax(teacher/T) ‖ softmax(student/T))``.

    With a teacher that is certain (a one-hot distribution), this is the student's cross-entropy on the teacher's
    labels: soft labels then add nothing to hard ones.
    """
    if student_logits.shape != teacher_logits.shape:
        raise TeacherMismatchError(
            f"teacher logits {tuple(teacher_logits.shape)} do not match the student's {tuple(student_logits.shape)}"
        )
    labelled = labels != IGNORE_INDEX
    if not bool(labelled.any()):
        return student_logits.sum() * 0.0
    student = F.log_softmax(student_logits[labelled].float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits[labelled].float() / temperature, dim=-1)
    kl = F.kl_div(student, teacher, log_target=True, reduction="none").sum(dim=-1)
    return kl.mean() * temperature**2


class Teacher:
    """A trained token-classification model that gives soft labels for the student's batches (no gradients)."""

    def __init__(self, model: Any, temperature: float) -> None:
        self.model = model
        self.temperature = temperature

    @classmethod
    def load(cls, folder: Path, tokenizer: Any, tags: list[str], device: torch.device, temperature: float) -> Teacher:
        """The teacher in ``folder`` (checked to be a model folder by :func:`training.prepare`) on ``device``, checked
        against the student's tokenizer and tags."""
        model = AutoModelForTokenClassification.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        teacher_tags = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if teacher_tags != tags:
            raise TeacherMismatchError(f"teacher {folder} has tags {teacher_tags}, the student {tags}: they must match")
        teacher_tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        if teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
            raise TeacherMismatchError(
                f"teacher {folder} has another vocabulary than the student's base model: soft labels need the same"
                " tokenizer (train the student from the teacher's base model)"
            )
        model.to(device)
        model.eval()
        return cls(model, temperature)

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits.float()  # type: ignore[no-any-return]


class SoftLabels:
    """The teacher's logits for each training window, computed the first time the window is in a batch and kept.

    Neither the windows nor the teacher change while a student trains, so every epoch after the first reuses them
    instead of running the teacher again (the teacher's forward pass was about a third of each step's time). Kept
    on the CPU, as float32 rows of the window's own length.
    """

    def __init__(self, teacher: Teacher) -> None:
        self.teacher = teacher
        self.rows: dict[int, torch.Tensor] = {}
        self.computed = 0
        """Windows the teacher has been run on (each once)."""

    def logits(self, windows: Sequence[int], input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(batch, width, tags)`` teacher logits for the batch whose rows are the training windows ``windows``
        (right-padded: positions past a window's length are zeros, never labelled)."""
        missing = [row for row, window in enumerate(windows) if window not in self.rows]
        if missing:
            index = torch.tensor(missing, device=input_ids.device)
            fresh = self.teacher.logits(input_ids[index], attention_mask[index]).to("cpu")
            lengths = attention_mask[index].sum(dim=1).tolist()
            for row, logits, length in zip(missing, fresh, lengths, strict=True):
                self.rows[windows[row]] = logits[: int(length)].clone()
            self.computed += len(missing)
        width = input_ids.shape[1]
        rows = [self.rows[window] for window in windows]
        batch = torch.zeros((len(rows), width, rows[0].shape[-1]), dtype=torch.float32)
        for row, logits in enumerate(rows):
            batch[row, : logits.shape[0]] = logits
        return batch.to(input_ids.device)
