"""Fine-tuning a token-classification model on documents with character spans (our own loop, plain PyTorch).

- Inputs: every window of every document (:func:`synthner_shared.ner.encode_windows`, the first sub-token of a word
  labelled with the word's tag by default — ``subtokens="all"`` labels every one —, overlapping windows, nothing
  truncated).
- Loss: by default a word-level linear-chain CRF over the classifier's scores (:mod:`synthner_trainer.crf`), whose
  learned tag transitions the decoder then uses; with ``crf=False`` per-token cross-entropy.
- Batches are grouped by length (shuffled pools of 50 batches, sorted inside), so little compute goes to padding.
- Seeded (``random``, numpy, torch) and reproducible on one machine; AdamW with linear warm-up and decay.
- After each epoch the model is scored on the dev documents with the same span decoding and span evaluation used
  everywhere else; the best epoch's weights are kept, and training stops after ``patience`` epochs without gain.
- On CUDA it runs under bf16 autocast (fp16 with loss scaling where bf16 is missing); on CPU in fp32, or under bf16
  autocast with ``precision="bf16"`` where the CPU has native bf16 (:func:`autocast_for`).

After the best epoch is restored, the decoder's ``O`` bias and whether it expands abbreviations are chosen on dev
(:func:`calibrate_decoder`); the model folder stores both in ``encoding.json`` with the window, the sub-token policy
and the CRF's transitions, so every predictor decodes alike.

Validation (:func:`prepare`) raises before any model weights load: empty data, labels outside the set, a bad base
model folder.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from synthner_shared.contracts import EvaluationResult
from synthner_shared.documents import Document
from synthner_shared.evaluation import evaluate_spans
from synthner_shared.ner import (
    IGNORE_INDEX,
    EncodedWindow,
    LabelOutsideSetError,
    SpecialTokens,
    TagTransitions,
    encode_windows,
    entity_boundaries,
    iob2_tags,
    tokenize,
)
from synthner_shared.ner.abbreviations import with_abbreviations
from synthner_shared.ner.identifiers import identifier_label_map, with_identifiers
from synthner_shared.ner.predictor import SpanPredictor, pad_batch, pick_device, with_spans, write_encoding
from synthner_shared.observability.metrics import TRAINING
from synthner_trainer.base_model import check_base_model
from synthner_trainer.crf import ChainCRF
from synthner_trainer.distillation import SoftLabels, Teacher, TeacherMismatchError, soft_target_loss
from synthner_trainer.settings import Precision, TrainingConfig
from synthner_trainer.store import EmptyDatasetError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """Reported after every logging interval and at each epoch's end (no text, only numbers)."""

    epoch: float
    step: int
    total_steps: int
    loss: float
    tokens_per_second: float
    dev_f1: float | None = None


ProgressCallback = Callable[[Progress], None]
StopCheck = Callable[[], bool]
"""Asked before every step; True cancels the training (SIGTERM while training)."""


class TrainingCancelled(RuntimeError):
    """The training was asked to stop; nothing was written."""


def log_progress(progress: Progress) -> None:
    """The default progress report: a log line, and the trainer's ``/metrics`` (while the service runs a job)."""
    TRAINING.progress(progress.step, progress.total_steps, progress.epoch, progress.tokens_per_second)
    dev = f" dev_f1={progress.dev_f1:.4f}" if progress.dev_f1 is not None else ""
    log.info(
        "epoch %.2f step %d/%d loss %.4f %.0f tokens/s%s",
        progress.epoch,
        progress.step,
        progress.total_steps,
        progress.loss,
        progress.tokens_per_second,
        dev,
    )


@dataclass(frozen=True)
class TrainingPlan:
    """Checked inputs of a training run: nothing in here can fail once weights start loading."""

    train: list[Document]
    dev: list[Document]
    labels: list[str]
    base_model: Path
    config: TrainingConfig


@dataclass
class TrainingResult:
    model: Any
    tokenizer: Any
    labels: list[str]
    config: TrainingConfig
    base_model: Path
    dev_result: EvaluationResult
    best_epoch: int
    epochs_run: int
    seconds: float
    train_tokens: int
    tokens_per_second: float
    history: list[dict[str, float]] = field(default_factory=list)
    outside_bias: float = 0.0
    abbreviations: bool = False
    transitions: TagTransitions | None = None
    identifiers: dict[str, str] = field(default_factory=dict)
    dev: list[Document] = field(default_factory=list)
    """The documents its epoch and decoder were chosen on (its shipped int8 graph is chosen on them too)."""

    def predictor(self) -> SpanPredictor:
        """Predicts with the trained model in memory, with the windows it was trained on and its decoder options."""
        return SpanPredictor(
            self.model,
            self.tokenizer,
            max_length=self.config.max_length,
            stride=self.config.stride,
            outside_bias=self.outside_bias,
            subtokens=self.config.subtokens,
            abbreviations=self.abbreviations,
            transitions=self.transitions,
            identifiers=self.identifiers,
        )

    def save(self, folder: Path) -> None:
        """Write the Hugging Face folder: config (with the label map), safetensors weights, tokenizer, encoding."""
        self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        write_encoding(
            folder,
            self.config.max_length,
            self.config.stride,
            self.outside_bias,
            self.config.subtokens,
            abbreviations=self.abbreviations,
            transitions=self.transitions,
            identifiers=self.identifiers,
        )


def label_set(documents: Sequence[Document], configured: Sequence[str] | None) -> list[str]:
    """The configured labels, or the labels found in the documents; raises when a document uses another label."""
    found = {e.label for d in documents for e in d.entities}
    if configured is None:
        if not found:
            raise EmptyDatasetError("the training documents contain no entities, and no label set is configured")
        return sorted(found)
    outside = sorted(found - set(configured))
    if outside:
        raise LabelOutsideSetError(
            f"documents use labels {outside} outside the configured label set {sorted(configured)}"
        )
    return sorted(set(configured))


def split_dev(documents: Sequence[Document], fraction: float, seed: int) -> tuple[list[Document], list[Document]]:
    """A reproducible train/dev split (at least one document each when there are two or more)."""
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)  # noqa: S311 - reproducible split, not security
    size = min(max(1, round(len(documents) * fraction)), len(documents) - 1) if len(documents) > 1 else 0
    dev_indices = set(order[:size])
    return (
        [d for i, d in enumerate(documents) if i not in dev_indices],
        [d for i, d in enumerate(documents) if i in dev_indices],
    )


def prepare(
    train: Sequence[Document],
    dev: Sequence[Document] | None,
    base_model: str | Path,
    config: TrainingConfig,
    *,
    labels: Sequence[str] | None = None,
    dev_fraction: float = 0.1,
) -> TrainingPlan:
    """Check everything a training run needs; raise a clear error before any weights load."""
    if not train:
        raise EmptyDatasetError("the training set is empty")
    folder = check_base_model(base_model)
    if dev is None:
        if len(train) < 2:
            raise EmptyDatasetError("at least two documents are needed to hold one out for early stopping")
        train, dev = split_dev(train, dev_fraction, config.seed)
    if not dev:
        raise EmptyDatasetError("the dev set is empty")
    resolved = label_set([*train, *dev], labels)
    if config.distill_from is not None and not (config.distill_from / "config.json").is_file():
        raise TeacherMismatchError(f"distill_from {config.distill_from} is not a model folder (no config.json)")
    for name, stride in (("stride", config.stride), ("train_stride", config.train_stride)):
        if stride is not None and stride >= config.max_length - 2:
            raise ValueError(f"{name} {stride} must be smaller than max_length {config.max_length} minus 2")
    return TrainingPlan(list(train), list(dev), resolved, folder, config)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled index batches of similar lengths: shuffle, sort within pools of 50 batches, shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i], reverse=True)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(windows: Sequence[EncodedWindow], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    ids, mask = pad_batch([w.input_ids for w in windows], pad_id, device)
    labels = torch.full(ids.shape, IGNORE_INDEX, dtype=torch.long)
    for row, window in enumerate(windows):
        labels[row, : len(window.labels)] = torch.tensor(window.labels, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels.to(device)}


def encode_documents(
    documents: Sequence[Document], tokenizer: Any, tag_ids: dict[str, int], config: TrainingConfig
) -> list[EncodedWindow]:
    special = SpecialTokens.of(tokenizer)
    windows: list[EncodedWindow] = []
    for document in documents:
        tokens = tokenize(tokenizer, document.text, cuts=entity_boundaries(document.entities))  # exactly as annotated
        windows += encode_windows(
            tokens,
            document.entities,
            tag_ids,
            special,
            max_length=config.max_length,
            stride=config.stride if config.train_stride is None else config.train_stride,
            subtokens=config.subtokens,
        )
    return windows


def oversample_rare_labels(windows: Sequence[EncodedWindow], tags: Sequence[str], minimum: int) -> list[EncodedWindow]:
    """``windows`` and, for each label that begins in fewer than ``minimum`` of them, repeats of the windows where it
    begins, up to about ``minimum`` (0: ``windows`` unchanged). A window holding two rare labels repeats for each."""
    if minimum <= 0:
        return list(windows)
    begins = {index for index, tag in enumerate(tags) if tag.startswith("B-")}
    holding: dict[int, list[int]] = {}
    for index, window in enumerate(windows):
        for tag in begins.intersection(window.labels):
            holding.setdefault(tag, []).append(index)
    repeats: list[int] = []
    for tag, indices in sorted(holding.items()):
        if len(indices) < minimum:
            repeats += indices * (math.ceil(minimum / len(indices)) - 1)
            log.info("%s begins in %d training windows: repeated to %d", tags[tag][2:], len(indices), minimum)
    return [*windows, *(windows[i] for i in repeats)]


def load_for_training(plan: TrainingPlan) -> tuple[Any, Any]:
    """Tokenizer and a fresh token-classification model (new head for the plan's tags) from the base folder, with only
    its first ``config.encoder_layers`` layers when that is set.

    The weights load as fp32 whatever the folder stores (transformers would keep a half-precision checkpoint in half
    precision): mixed precision needs fp32 master weights, and the optimiser's state follows the weights' dtype.
    """
    tags = iob2_tags(plan.labels)
    tokenizer = AutoTokenizer.from_pretrained(plan.base_model, local_files_only=True)
    # A smaller num_hidden_layers loads the first N layers' weights and leaves the others out.
    depth = {} if plan.config.encoder_layers is None else {"num_hidden_layers": plan.config.encoder_layers}
    model = AutoModelForTokenClassification.from_pretrained(
        plan.base_model,
        local_files_only=True,
        dtype=torch.float32,
        **depth,
        num_labels=len(tags),
        id2label=dict(enumerate(tags)),
        label2id={t: i for i, t in enumerate(tags)},
        ignore_mismatched_sizes=True,  # a token-classification base model with another label set gets a new head
    )
    return tokenizer, model


class PrecisionError(ValueError):
    """The requested precision cannot run on this device."""


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 natively here (AVX512-BF16 or AMX); elsewhere bf16 on the CPU is emulated, slow."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())  # type: ignore[no-untyped-call]


def fastest_precision(device: str = "auto") -> Precision:
    """``bf16`` on a CPU-only machine whose CPU has native bf16 (about 1.4x faster there), else ``auto``."""
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    return "bf16" if on_cpu and cpu_has_native_bf16() else "auto"


def autocast_for(device: torch.device, precision: str) -> tuple[torch.autocast | None, torch.amp.GradScaler | None]:
    """The autocast context (and loss scaler, for fp16) of a precision setting on a device; (None, None) is fp32."""
    if precision == "fp32":
        return None, None
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported() and precision != "fp16"
        if precision == "bf16" and not bf16:
            raise PrecisionError("precision bf16 was asked for, but this GPU has no bf16 support")
        scaler = None if bf16 else torch.amp.GradScaler("cuda")
        return torch.autocast("cuda", dtype=torch.bfloat16 if bf16 else torch.float16), scaler
    if precision == "fp16":
        raise PrecisionError("precision fp16 was asked for, but it runs on CUDA only (use bf16 or fp32 on a CPU)")
    if precision == "bf16":
        if not cpu_has_native_bf16():
            raise PrecisionError("precision bf16 was asked for, but this CPU has no native bf16 (AVX512-BF16 or AMX)")
        return torch.autocast(device.type, dtype=torch.bfloat16), None
    return None, None


_LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")


def parameter_groups(
    model: Any, learning_rate: float, weight_decay: float, layer_decay: float = 1.0
) -> list[dict[str, Any]]:
    """AdamW groups of the trainable parameters: no weight decay on biases and norms; layer-wise learning rates.

    With ``layer_decay`` < 1 the parameters above the encoder (head, pooler) learn at ``learning_rate``, encoder
    layer ``i`` (of ``n``) at ``learning_rate * layer_decay ** (n - i)``, and the embeddings at
    ``learning_rate * layer_decay ** (n + 1)``.
    """
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    groups: dict[tuple[int, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        depth = layers + 1  # above the encoder
        if layer_decay < 1.0:
            found = _LAYER_INDEX.search(name)
            if found is not None:
                depth = int(found.group(1)) + 1
            elif "embeddings" in name:
                depth = 0
        groups.setdefault((depth, name.endswith(no_decay)), []).append(parameter)
    return [
        {
            "params": params,
            "weight_decay": 0.0 if exempt else weight_decay,
            "lr": learning_rate * layer_decay ** (layers + 1 - depth),
        }
        for (depth, exempt), params in sorted(groups.items())
    ]


OUTSIDE_BIAS_GRID = (-1.5, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
"""Candidate ``O`` biases of the decoder (log-probability units): 0 is plain Viterbi; above it, fewer entities; below
it, more. A model trained on text sparser in entities than the real notes (the demo's and the study's students: most
synthetic notes carry none) learns too much ``O`` and under-predicts: the demo's student (dev P 0.70, R 0.58) chose
-0.75 on dev, 0.6352 -> 0.6733 (test 0.6237 -> 0.6319); the study's prefix-route student (399 notes) chose -0.25,
dev 0.7590 -> 0.7633 (test 0.7614 -> 0.7600). Gold-trained models keep choosing 0 or above (NCBI-disease seeds 13
and 14: every negative bias lower on dev)."""


@dataclass(frozen=True)
class DecoderChoice:
    """The decoder options chosen on dev, and the dev evaluation with them."""

    outside_bias: float
    abbreviations: bool
    result: EvaluationResult
    identifiers: dict[str, str] = field(default_factory=dict)


def calibrate_decoder(
    predictor: SpanPredictor,
    dev: Sequence[Document],
    biases: Sequence[float] = OUTSIDE_BIAS_GRID,
    abbreviations: Sequence[bool] = (False, True),
    identifiers: Mapping[str, str] | None = None,
) -> DecoderChoice:
    """The ``O`` bias and abbreviation step with the best strict micro F1 on ``dev``; ties go to the bias nearest 0
    (positive before negative), then to no abbreviation step (the simpler decoder wins unless the other is better).
    Then, one kind at a time, the candidate ``identifiers`` (kind -> label, :mod:`synthner_shared.ner.identifiers`)
    that raise dev strict F1.

    The model runs once; only the decoding is repeated per candidate.
    """
    scored = predictor.score([d.text for d in dev])
    best: DecoderChoice | None = None
    for bias in sorted(biases, key=lambda b: (abs(b), -b)):
        plain = [predictor.decode(s, bias, abbreviations=False, identifiers={}) for s in scored]  # Viterbi per bias
        for expand in sorted(abbreviations):
            decoded = (
                [with_abbreviations(s.text, spans) for s, spans in zip(scored, plain, strict=True)] if expand else plain
            )
            result = evaluate_spans(dev, with_spans(dev, decoded), "dev")
            if best is None or result.strict_micro.f1 > best.result.strict_micro.f1:
                best = DecoderChoice(bias, expand, result)
    if best is None:
        raise ValueError("no decoder options to choose from")
    chosen = [predictor.decode(s, best.outside_bias, best.abbreviations, identifiers={}) for s in scored]
    for kind, label in sorted((identifiers or {}).items()):
        trial = {**best.identifiers, kind: label}
        decoded = [with_identifiers(s.text, spans, trial) for s, spans in zip(scored, chosen, strict=True)]
        result = evaluate_spans(dev, with_spans(dev, decoded), "dev")
        if result.strict_micro.f1 > best.result.strict_micro.f1:
            best = DecoderChoice(best.outside_bias, best.abbreviations, result, trial)
    return best


def decoder_candidates(config: TrainingConfig) -> tuple[tuple[float, ...], tuple[bool, ...]]:
    """The ``O`` biases and abbreviation choices the configuration leaves open for :func:`calibrate_decoder`."""
    biases = OUTSIDE_BIAS_GRID if config.calibrate_outside_bias else (0.0,)
    abbreviations = {"auto": (False, True), "on": (True,), "off": (False,)}[config.abbreviations]
    return biases, abbreviations


class WeightAverage:
    """Exponential moving average of a model's floating-point weights (``decay`` per step)."""

    def __init__(self, model: Any, decay: float) -> None:
        self.decay = decay
        state = model.state_dict()
        self.names = [n for n, v in state.items() if v.is_floating_point()]
        self.shadow = [state[n].detach().clone() for n in self.names]

    def update(self, model: Any) -> None:
        state = model.state_dict()
        torch._foreach_lerp_(self.shadow, [state[n].detach() for n in self.names], 1.0 - self.decay)

    def swap(self, model: Any) -> None:
        """Exchange the model's weights and the average (call twice to undo)."""
        state = model.state_dict()
        with torch.no_grad():
            for name, shadow in zip(self.names, self.shadow, strict=True):
                current = state[name].detach().clone()
                state[name].copy_(shadow)
                shadow.copy_(current)


@dataclass(frozen=True)
class LinearSchedule:
    """Learning-rate factor over a run's progress (0 at the start, 1 at the end): linear warm-up over the first
    ``warmup_ratio``, then linear decay to 0 (transformers' linear schedule, on progress rather than steps)."""

    warmup_ratio: float

    def factor(self, progress: float) -> float:
        if progress < self.warmup_ratio:
            return progress / self.warmup_ratio
        # A run that is all warm-up (ratio 1) ends at 0, as transformers' schedule does, instead of dividing by 0.
        return max(0.0, (1.0 - progress) / max(1.0 - self.warmup_ratio, 1e-12))


def run_progress(step: int, total_steps: int, seconds: float, max_seconds: float | None) -> float:
    """How far a run is (0-1): the share of its planned steps done, or, with a time budget, the share of the budget
    used when that is larger, so that the learning rate has decayed by the time the budget cuts the run short
    (a schedule over steps the budget never reaches ends training at a high rate)."""
    done = step / max(1, total_steps)
    if max_seconds is None or max_seconds <= 0:
        return done
    return min(1.0, max(done, seconds / max_seconds))


class Optimizer:
    """AdamW with linear warm-up and decay, gradient clipping, and mixed precision on CUDA.

    Only parameters that require gradients are optimised (all of them in full fine-tuning, the adapters in LoRA).
    With a ``crf``, the loss is the CRF's over the model's logits, and its parameters learn at
    ``crf_learning_rate_scale`` times the learning rate.
    """

    def __init__(
        self,
        model: Any,
        *,
        learning_rate: float,
        weight_decay: float,
        warmup_ratio: float,
        total_steps: int,
        device: torch.device,
        precision: str = "auto",
        layer_decay: float = 1.0,
        crf: ChainCRF | None = None,
        crf_learning_rate_scale: float = 1.0,
        teacher: Teacher | None = None,
        distill_weight: float = 0.0,
    ) -> None:
        self.model = model
        self.crf = crf
        self.teacher = teacher
        self.soft_labels = SoftLabels(teacher) if teacher is not None else None
        self.distill_weight = distill_weight if teacher is not None else 0.0
        groups = parameter_groups(model, learning_rate, weight_decay, layer_decay)
        if crf is not None:
            groups.append(
                {"params": list(crf.parameters()), "weight_decay": 0.0, "lr": learning_rate * crf_learning_rate_scale}
            )
        self.parameters = [p for group in groups for p in group["params"]]
        self.optimizer = torch.optim.AdamW(groups)
        self.base_rates = [float(group["lr"]) for group in self.optimizer.param_groups]
        self.schedule = LinearSchedule(warmup_ratio)
        self.total_steps = total_steps
        self.steps_done = 0
        self.autocast, self.scaler = autocast_for(device, precision)

    def step(
        self, batch: dict[str, torch.Tensor], windows: Sequence[int] | None = None, progress: float | None = None
    ) -> float:
        """One optimisation step on a batch; returns the loss. ``windows``: the training windows the batch's rows
        are, so that the teacher's soft labels are computed once per window (None: the teacher runs on the batch).
        ``progress``: how far the run is (0-1, :func:`run_progress`), which sets the learning rate; None: the share
        of ``total_steps`` done."""
        factor = self.schedule.factor(self.steps_done / max(1, self.total_steps) if progress is None else progress)
        for group, rate in zip(self.optimizer.param_groups, self.base_rates, strict=True):
            group["lr"] = rate * factor
        with self.autocast if self.autocast is not None else contextlib.nullcontext():
            output = (
                self.model(**batch)
                if self.crf is None
                else self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            )
            teacher_logits = None
            if self.soft_labels is not None and windows is not None:
                teacher_logits = self.soft_labels.logits(windows, batch["input_ids"], batch["attention_mask"])
            elif self.teacher is not None:
                teacher_logits = self.teacher.logits(batch["input_ids"], batch["attention_mask"])
        loss = output.loss if self.crf is None else self.crf.loss(output.logits.float(), batch["labels"])
        if self.teacher is not None and teacher_logits is not None:
            soft = soft_target_loss(output.logits, teacher_logits, batch["labels"], self.teacher.temperature)
            loss = (1.0 - self.distill_weight) * loss + self.distill_weight * soft
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters, 1.0)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.steps_done += 1
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())


@dataclass
class _Best:
    f1: float = -1.0
    epoch: int = 0
    state: dict[str, torch.Tensor] | None = None
    crf_state: dict[str, torch.Tensor] | None = None
    result: EvaluationResult | None = None

    def offer(self, model: Any, crf: ChainCRF | None, epoch: int, result: EvaluationResult) -> bool:
        """Keep a copy of the weights (and the CRF's) if this epoch beats the best so far; True if it did."""
        if result.strict_micro.f1 <= self.f1:
            return False
        self.f1, self.epoch, self.result = result.strict_micro.f1, epoch, result
        self.state = _copy_state(model)
        self.crf_state = _copy_state(crf) if crf is not None else None
        return True


def _copy_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def fine_tune(  # noqa: PLR0915 - one training loop, easier to follow in one piece
    plan: TrainingPlan,
    *,
    device: str = "auto",
    patience: int = 2,
    progress: ProgressCallback = log_progress,
    log_every: int = 50,
    max_seconds: float | None = None,
    should_stop: StopCheck | None = None,
) -> TrainingResult:
    """Fine-tune the plan's base model; returns the best epoch's model (by strict micro F1 on the dev documents).

    ``max_seconds`` bounds the optimisation time: when it runs out, the current epoch ends early, is scored on dev,
    and training stops; the learning rate decays to 0 by the end of the budget (``config.decay_to_budget``) or of the
    planned steps, whichever comes first.
    """
    started = time.perf_counter()
    config = plan.config
    seed_everything(config.seed)
    torch_device = pick_device(device)
    tokenizer, model = load_for_training(plan)
    if config.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    model.to(torch_device)
    tags = iob2_tags(plan.labels)
    tag_ids = {t: i for i, t in enumerate(tags)}
    crf = ChainCRF(tags).to(torch_device) if config.crf else None
    teacher = (
        Teacher.load(config.distill_from, tokenizer, tags, torch_device, config.distill_temperature)
        if config.distill_from is not None
        else None
    )
    windows = oversample_rare_labels(
        encode_documents(plan.train, tokenizer, tag_ids, config), tags, config.oversample_rare_labels
    )
    lengths = [len(w.input_ids) for w in windows]
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    steps_per_epoch = math.ceil(len(windows) / config.batch_size)
    total_steps = max(1, math.ceil(steps_per_epoch * config.epochs))
    optimizer = Optimizer(
        model,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        total_steps=total_steps,
        device=torch_device,
        precision=config.precision,
        layer_decay=config.layer_decay,
        crf=crf,
        crf_learning_rate_scale=config.crf_learning_rate_scale,
        teacher=teacher,
        distill_weight=config.distill_weight,
    )
    average = WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None
    predictor = SpanPredictor(
        model,
        tokenizer,
        max_length=config.max_length,
        stride=config.stride,
        batch_size=64,
        subtokens=config.subtokens,
    )
    rng = random.Random(config.seed)  # noqa: S311 - reproducible shuffling, not security

    best = _Best()
    history: list[dict[str, float]] = []
    step, epoch, stale, tokens, train_seconds = 0, 0, 0, 0, 0.0
    out_of_time = False
    while step < total_steps and not out_of_time:
        epoch += 1
        model.train()
        epoch_started = time.perf_counter()
        losses: list[float] = []
        for batch_indices in length_grouped_batches(lengths, config.batch_size, rng)[: total_steps - step]:
            if should_stop is not None and should_stop():
                raise TrainingCancelled(f"training cancelled at step {step} of {total_steps}")
            batch = collate([windows[i] for i in batch_indices], pad_id, torch_device)
            budget = max_seconds if config.decay_to_budget else None
            done = run_progress(step, total_steps, train_seconds + time.perf_counter() - epoch_started, budget)
            losses.append(optimizer.step(batch, batch_indices, done))
            if average is not None:
                average.update(model)
            step += 1
            tokens += int(batch["attention_mask"].sum())
            elapsed = train_seconds + time.perf_counter() - epoch_started
            if step % log_every == 0:
                progress(
                    Progress(step / steps_per_epoch, step, total_steps, sum(losses) / len(losses), tokens / elapsed)
                )
            if max_seconds is not None and elapsed >= max_seconds:
                log.info("time budget of %.0f s used up at step %d of %d", max_seconds, step, total_steps)
                out_of_time = True
                break
        train_seconds += time.perf_counter() - epoch_started
        if average is not None:
            average.swap(model)  # score (and keep) the averaged weights
        predictor.transitions = crf.tag_transitions() if crf is not None else None
        dev_result = evaluate_spans(plan.dev, predictor.predict_documents(plan.dev), "dev")
        dev_f1 = dev_result.strict_micro.f1
        loss_mean = sum(losses) / max(1, len(losses))
        history.append({"epoch": float(epoch), "step": float(step), "loss": loss_mean, "dev_strict_f1": dev_f1})
        progress(Progress(step / steps_per_epoch, step, total_steps, loss_mean, tokens / train_seconds, dev_f1))
        stale = 0 if best.offer(model, crf, epoch, dev_result) else stale + 1
        if average is not None:
            average.swap(model)
        if patience and stale >= patience:
            log.info("early stop after epoch %d: no dev F1 gain for %d epochs", epoch, stale)
            break
    assert best.state is not None
    assert best.result is not None
    model.load_state_dict(best.state)
    model.eval()
    if crf is not None and best.crf_state is not None:
        crf.load_state_dict(best.crf_state)
        predictor.transitions = crf.tag_transitions()
    biases, abbreviations = decoder_candidates(config)
    identifiers = identifier_label_map((d.text, d.entities) for d in plan.train) if config.identifiers == "auto" else {}
    decoder = DecoderChoice(0.0, False, best.result)
    if (biases, abbreviations) != ((0.0,), (False,)) or identifiers:  # something to choose or to score with
        decoder = calibrate_decoder(predictor, plan.dev, biases, abbreviations, identifiers)
        log.info(
            "decoder O bias %.2f, abbreviations %s, identifiers %s of candidates %s: dev strict F1 %.4f"
            " (%.4f without any)",
            decoder.outside_bias,
            "on" if decoder.abbreviations else "off",
            decoder.identifiers,
            sorted(identifiers),
            decoder.result.strict_micro.f1,
            best.result.strict_micro.f1,
        )
    return TrainingResult(
        model=model,
        tokenizer=tokenizer,
        labels=plan.labels,
        config=config,
        base_model=plan.base_model,
        dev_result=decoder.result,
        best_epoch=best.epoch,
        epochs_run=epoch,
        seconds=time.perf_counter() - started,
        train_tokens=tokens,
        tokens_per_second=tokens / train_seconds if train_seconds else 0.0,
        history=history,
        outside_bias=decoder.outside_bias,
        abbreviations=decoder.abbreviations,
        transitions=predictor.transitions,
        identifiers=decoder.identifiers,
        dev=plan.dev,
    )
