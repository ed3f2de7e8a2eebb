"""The model as ONNX, shipped in its version folder: exported by the trainer at publish time, served by the NER API on
ONNX Runtime without torch.

Files beside the Hugging Face folder (``config.json``, tokenizer, ``encoding.json``):

- ``model.onnx``: the fp32 graph (inputs ``input_ids``, ``attention_mask``; output ``logits``; dynamic batch and
  sequence axes), exported from the torch model by :func:`export_onnx`;
- ``model.int8.onnx``: its int8 dynamic quantisation (weights int8 per output channel in a 7-bit range, activations
  quantised on the fly), which the NER API serves only when it passes its F1 gate: every MatMul int8 where that costs
  at most :data:`INT8_MAX_F1_DROP` strict F1 on the documents the export is given (the model's dev), otherwise the
  feed-forward MatMuls of the first :data:`INT8_FP32_FFN_LAYERS` layers stay fp32 (:func:`write_int8`);
- ``onnx.json``: what was exported, and each file's size and SHA-256, checked before a session opens, so a truncated or
  altered graph is refused with a clear reason.

:class:`OnnxSpanPredictor` is the shared :class:`~synthner_shared.ner.windowed.WindowedTagger` (tokenisation, windows,
decoding) with an ONNX Runtime session as its forward pass: it needs ``onnxruntime``, numpy and the folder's fast
tokenizer (``transformers`` without torch), never torch. Only :func:`export_onnx` imports torch, inside.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import warnings
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthner_shared.documents import Document
from synthner_shared.evaluation import evaluate_spans
from synthner_shared.ner.windowed import (
    LogProbabilities,
    ModelFolderError,
    WindowedTagger,
    iob2_tags_of,
    log_softmax,
    pad_rows,
    read_encoding,
)

if TYPE_CHECKING:
    import onnx
    import onnxruntime

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
ONNX_MANIFEST = "onnx.json"
OPSET = 17
_INPUTS = ("input_ids", "attention_mask")
INT8_FP32_FFN_LAYERS = 2
"""Encoder layers whose feed-forward MatMuls (up and down projection) stay fp32 in the int8 graph. The int8 error
comes mostly from there: per MatMul kept fp32, all-MiniLM-L6-v2 fine-tuned on NCBI-disease (AVX2-only CPU,
2026-12-07) lost the most KL divergence (int8 against fp32 token distributions, 60 dev documents) at layer 0's
down and up projections, then layer 1's; the four together cut it from 0.00126 to 0.00040 (the whole of layers 0-1,
attention too: 0.00037), and the dev strict-F1 drop from 0.0054 to -0.0016. They are about a fifth of the 6-layer
model's MatMul work (the whole int8 speed-up they cost is why :func:`write_int8` ships every MatMul int8 where the
F1 allows it)."""
INT8_MAX_F1_DROP = 0.005
"""Largest strict-F1 drop, against the fp32 graph on the export's documents, at which every MatMul is shipped int8 (the
NER API's gate allows the same by default). On a 2-core AVX-512 VNNI CPU the every-MatMul graph of a 3-layer
all-MiniLM-L6-v2 ran 1.3x the one with two fp32 layers (``benchmarks/int8_fp32_layers.py``) at a dev drop of
-0.0002; the 6-layer model's drop sat at 0.0050-0.0054, at the edge."""
INT8_CHOICE_DOCUMENTS = 100
"""Documents the int8 choice scores at most (the first ones given: the same choice on every run)."""
INT8_WINDOWS_PER_PASS = 1
"""int8 runs one window per forward pass. Dynamic quantisation scales the activations by the range of the whole batch
tensor, so a window batched with others got other int8 values: a document's entities depended on the documents that
shared its pass (the micro-batcher's traffic, the int8 gate's sample). With all-MiniLM-L6-v2 on NCBI-disease, 14 of
100 test abstracts changed spans when the batch order was reversed, 20 when each was sent alone; one window per pass
gives every document the same entities whatever it is served with, agreed with fp32 at least as well and, on a
2-core AMD EPYC (AVX-512), ran faster than passes of 64 windows (70-73 against 62 abstracts/s; 4 windows ran 84)."""


class OnnxUnavailableError(ModelFolderError):
    """A folder without shipped ONNX, where no torch is installed to export it."""


def file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def manifest_entry(path: Path) -> dict[str, Any]:
    """A file's entry in ``onnx.json``: its size and SHA-256, as :func:`check_files` checks them."""
    return {"bytes": path.stat().st_size, "sha256": file_digest(path)}


def export_onnx(
    model: Any, folder: Path, *, int8: bool = True, choose_int8_on: Sequence[Document] = ()
) -> dict[str, Any]:
    """Write ``model.onnx`` (and, with ``int8``, ``model.int8.onnx``: :func:`write_int8`, choosing on
    ``choose_int8_on``) and ``onnx.json`` into ``folder``, which already holds the model's tokenizer and config.

    ``model`` is a torch token-classification model (put in inference mode for the export, its mode restored after).
    Torch and the ``onnx`` package are imported here only. Returns the manifest written to ``onnx.json``.
    """
    _export_fp32(model, folder / ONNX_FILE)
    files = [ONNX_FILE]
    int8_entry = None
    if int8:
        int8_entry = write_int8(folder, choose_int8_on[:INT8_CHOICE_DOCUMENTS])
        files.append(ONNX_INT8_FILE)
    manifest = {
        "opset": OPSET,
        "inputs": list(_INPUTS),
        "output": "logits",
        "int8": int8_entry,
        "files": {name: manifest_entry(folder / name) for name in files},
    }
    (folder / ONNX_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def write_int8(folder: Path, documents: Sequence[Document], *, max_f1_drop: float = INT8_MAX_F1_DROP) -> dict[str, Any]:
    """Write ``folder``'s ``model.int8.onnx`` from its ``model.onnx``, the fastest int8 graph the F1 allows: every
    MatMul int8 if its strict F1 on ``documents`` is at most ``max_f1_drop`` below the fp32 graph's, else
    the first :data:`INT8_FP32_FFN_LAYERS` layers' feed-forward MatMuls fp32 (also where no document holds an entity:
    F1 says nothing there). Returns the manifest's ``int8`` entry: the method, the MatMuls left fp32 and, where a
    document holds an entity, the two F1s."""
    source, target = folder / ONNX_FILE, folder / ONNX_INT8_FILE
    entry: dict[str, Any] = {
        "method": "dynamic quantisation (onnxruntime quantize_dynamic): QInt8 weights, per channel, reduce_range"
    }
    if any(document.entities for document in documents):
        quantize_int8(source, target, fp32_ffn_layers=0)
        fp32_f1 = _strict_f1_of_graph(folder, source, documents)
        all_int8_f1 = _strict_f1_of_graph(folder, target, documents)
        passed = fp32_f1 - all_int8_f1 <= max_f1_drop
        entry["chosen_on"] = {
            "documents": len(documents),
            "fp32_strict_f1": round(fp32_f1, 4),
            "all_int8_strict_f1": round(all_int8_f1, 4),
            "max_f1_drop": max_f1_drop,
            "all_int8": passed,
        }
        log.info(
            "int8 graph: every MatMul int8 scores %.4f against fp32 %.4f on %d documents -> %s",
            all_int8_f1,
            fp32_f1,
            len(documents),
            "shipped" if passed else f"the first {INT8_FP32_FFN_LAYERS} layers' feed-forward blocks stay fp32",
        )
        if passed:
            return {**entry, "fp32_nodes": []}
    return {**entry, "fp32_nodes": quantize_int8(source, target)}


def _strict_f1_of_graph(folder: Path, graph: Path, documents: Sequence[Document]) -> float:
    """Strict micro F1 of a graph on ``documents``, served as the NER API serves it (int8: one window a pass)."""
    tokenizer, tags, settings = _tagger_parts(folder)
    tagger = OnnxSpanPredictor(_open(graph, None), tokenizer, tags, **settings)
    if graph.name != ONNX_FILE:
        tagger.batch_size = INT8_WINDOWS_PER_PASS
    return evaluate_spans(documents, tagger.predict_documents(documents), "int8-choice").strict_micro.f1


def _export_fp32(model: Any, path: Path) -> None:
    """TorchScript-based export with dynamic batch and sequence axes (the torch.export-based exporter needs
    onnxscript and handles the data-dependent attention mask of BERT-like models less predictably).

    Exported with the eager attention implementation (plain MatMul/Softmax), restored afterwards: on a 2-core AMX
    CPU with all-MiniLM-L6-v2 the graph of torch's SDPA attention ran 15.5 documents/s on ONNX Runtime, the eager one
    19.3 (int8: 24.5 and about 34), with the same spans."""
    import torch  # noqa: PLC0415 - only exporting needs torch; serving never comes here

    example = torch.ones((2, 8), dtype=torch.long, device=next(model.parameters()).device)
    axes = {name: {0: "batch", 1: "sequence"} for name in (*_INPUTS, "logits")}
    was_training = model.training
    attention = getattr(model.config, "_attn_implementation", None)
    model.train(False)
    if attention not in (None, "eager") and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings are expected here
            torch.onnx.export(
                model,
                (example, example),
                str(path),
                input_names=list(_INPUTS),
                output_names=["logits"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    finally:
        model.train(was_training)
        if attention not in (None, "eager") and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation(attention)
    log.debug("exported the model to ONNX (%d bytes)", path.stat().st_size)


def quantize_int8(source: Path, target: Path, *, fp32_ffn_layers: int = INT8_FP32_FFN_LAYERS) -> list[str]:
    """int8 dynamic quantisation of an fp32 graph; returns the names of the MatMuls left fp32 (the feed-forward
    projections of the first ``fp32_ffn_layers`` layers, :func:`feed_forward_matmuls`). Per-channel scales and a 7-bit
    weight range: on the NCBI-disease dev split the strict-F1 cost of int8 fell from 0.0035 (per-tensor, 8-bit) to
    0.0011 at the same speed."""
    import onnx  # noqa: PLC0415 - only exporting needs the onnx package
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    kept_fp32 = [name for pair in feed_forward_matmuls(onnx.load(str(source)))[:fp32_ffn_layers] for name in pair]
    # onnxruntime's quantizer logs on the root logger: an advice to pre-process the graph at WARNING on every call
    # (measured above: the graph as exported loses 0.0011 strict F1), which reached the demo's terminal, and some 35
    # INFO lines a graph ("Quantization parameters for tensor ... not specified", "Ignore MatMul ..."), which filled
    # the trainer's log. They go to DEBUG here.
    advice = _Demoted()
    logging.getLogger().addFilter(advice)
    try:
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            nodes_to_exclude=kept_fp32,
        )
    finally:
        logging.getLogger().removeFilter(advice)
    return kept_fp32


def feed_forward_matmuls(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """The (up, down) projection MatMuls of each encoder layer's feed-forward block, in graph order (layer 0 first).

    Found by shape, not by name, so any BERT-like export qualifies: the attention projections' weights are square
    (hidden x hidden), the feed-forward ones hidden x inner (inner > hidden) followed by inner x hidden; the
    classifier's hidden x labels has no partner. An up projection without its down projection right after it is not
    counted."""
    weights = {tensor.name: tuple(tensor.dims) for tensor in model.graph.initializer if len(tensor.dims) == 2}
    shaped = [
        (node.name, next(weights[name] for name in node.input if name in weights))
        for node in model.graph.node
        if node.op_type == "MatMul" and any(name in weights for name in node.input)
    ]
    pairs: list[tuple[str, str]] = []
    for (up, (rows, inner)), (down, down_shape) in pairwise(shaped):
        if rows < inner and down_shape == (inner, rows):
            pairs.append((up, down))
    return pairs


class _Demoted(logging.Filter):
    """Logs the root logger's records below ERROR at DEBUG on this module's logger instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "root" and record.levelno < logging.ERROR:
            log.debug("onnxruntime: %s", record.getMessage())
            return False
        return True


def check_files(folder: Path, names: Sequence[str]) -> None:
    """Each of ``names`` exists with the size and SHA-256 that ``onnx.json`` records; :class:`ModelFolderError` if
    not (a truncated copy, a file changed after publishing, or a folder without the manifest)."""
    manifest_path = folder / ONNX_MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        recorded = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFolderError(f"{folder.name}: unreadable {ONNX_MANIFEST}: {type(exc).__name__}: {exc}") from exc
    for name in names:
        path = folder / name
        if name not in recorded:
            raise ModelFolderError(f"{folder.name}: {name} is not listed in {ONNX_MANIFEST}")
        if not path.is_file():
            raise ModelFolderError(f"{folder.name}: {name} is missing")
        size = path.stat().st_size
        if size != recorded[name]["bytes"]:
            raise ModelFolderError(
                f"{folder.name}: {name} has {size} bytes, {ONNX_MANIFEST} says {recorded[name]['bytes']} (truncated?)"
            )
        if file_digest(path) != recorded[name]["sha256"]:
            raise ModelFolderError(f"{folder.name}: {name} does not match its SHA-256 in {ONNX_MANIFEST}")


def has_shipped_onnx(folder: Path, *, int8: bool = False) -> bool:
    return (folder / ONNX_MANIFEST).is_file() and (folder / (ONNX_INT8_FILE if int8 else ONNX_FILE)).is_file()


def open_session(path: Path, threads: int | None = None) -> onnxruntime.InferenceSession:
    """A CPU session on ``path``: all graph optimisations, ``threads`` intra-op threads (None: one per core), one
    inter-op thread (the graph is one chain)."""
    import onnxruntime  # noqa: PLC0415 - only the serving path needs it

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or 0  # 0: one per core
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the optimiser's notes are not the operator's business
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401, PLC0415 - probing only
    except ImportError:
        return False
    return True


class OnnxSpanPredictor(WindowedTagger):
    """The shared windowed tagger with an ONNX Runtime session as its forward pass (no torch)."""

    def __init__(self, session: Any, tokenizer: Any, tags: Sequence[str], **options: Any) -> None:
        self.session = session
        super().__init__(tokenizer, tags, **options)

    def log_probabilities(self, rows: Sequence[Sequence[int]]) -> LogProbabilities:
        ids, mask = pad_rows(rows, self.pad_id)
        (logits,) = self.session.run(["logits"], {"input_ids": ids, "attention_mask": mask})
        return log_softmax(logits)

    @classmethod
    def load(
        cls,
        folder: str | Path,
        *,
        int8: bool = False,
        threads: int | None = None,
        export_if_missing: bool = True,
        **options: Any,
    ) -> OnnxSpanPredictor:
        """The shipped ``model.onnx`` (``model.int8.onnx`` with ``int8``) of a model folder, checked against
        ``onnx.json``, with the folder's tokenizer, tags (``config.json``) and encoding options (``encoding.json``;
        ``options`` override them).

        A folder written before ONNX was shipped: with ``export_if_missing`` and torch installed, the graph is
        exported from the torch weights into a temporary folder (removed once the session holds it); otherwise
        :class:`OnnxUnavailableError`.
        """
        path = Path(folder)
        tokenizer, tags, settings = _tagger_parts(path)
        settings.update(options)
        name = ONNX_INT8_FILE if int8 else ONNX_FILE
        if has_shipped_onnx(path, int8=int8):
            check_files(path, [name])
            session = _open(path / name, threads)
        elif int8 and has_shipped_onnx(path):
            check_files(path, [ONNX_FILE])
            session = _quantized_session(path, threads)
        elif not export_if_missing or not _torch_available():
            raise OnnxUnavailableError(
                f"{path.name} has no shipped {name} (a version published before the trainer shipped ONNX) and this"
                " process has no torch to export it: republish the model with the current trainer"
            )
        else:
            session = _exported_session(path, int8=int8, threads=threads)
        return cls(session, tokenizer, tags, **settings)


def _tagger_parts(path: Path) -> tuple[Any, list[str], dict[str, Any]]:
    """A model folder's tokenizer, IOB2 tags (``config.json``) and encoding options (``encoding.json``)."""
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ModelFolderError(f"{path} is not a model folder (no config.json)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        from transformers import AutoTokenizer  # noqa: PLC0415 - imports without torch (tokenizers only)

        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFolderError(f"{path}: the config or tokenizer could not be loaded: {reason}") from exc
    tags = iob2_tags_of(config.get("id2label") or {})
    return tokenizer, tags, {"max_positions": config.get("max_position_embeddings"), **read_encoding(path)}


def _open(path: Path, threads: int | None) -> Any:
    try:
        return open_session(path, threads)
    except Exception as exc:  # onnxruntime raises its own types for an unreadable graph
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFolderError(f"{path.parent.name}: {path.name} did not load in ONNX Runtime: {reason}") from exc


def _quantized_session(folder: Path, threads: int | None) -> Any:
    """Quantise a folder's shipped fp32 graph now (a folder published without ``model.int8.onnx``)."""
    try:
        import onnx  # noqa: F401, PLC0415 - quantize_dynamic needs it
    except ImportError as exc:
        raise OnnxUnavailableError(
            f"{folder.name} ships no {ONNX_INT8_FILE} and this process lacks the onnx package to quantise it"
        ) from exc
    with tempfile.TemporaryDirectory(prefix="synthner-onnx-") as scratch:
        quantize_int8(folder / ONNX_FILE, Path(scratch) / ONNX_INT8_FILE)
        return _open(Path(scratch) / ONNX_INT8_FILE, threads)


def _exported_session(folder: Path, *, int8: bool, threads: int | None) -> Any:
    """Export an old folder's torch weights now (a few seconds) and open a session on the result."""
    import torch  # noqa: PLC0415 - only reached where torch is installed
    from transformers import AutoModelForTokenClassification  # noqa: PLC0415

    log.warning("model %s has no shipped ONNX: exporting it from its torch weights", folder.name)
    try:
        model = AutoModelForTokenClassification.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFolderError(f"{folder} could not be loaded as a token-classification model: {reason}") from exc
    with tempfile.TemporaryDirectory(prefix="synthner-onnx-") as scratch:
        export_onnx(model, Path(scratch), int8=int8)
        return _open(Path(scratch) / (ONNX_INT8_FILE if int8 else ONNX_FILE), threads)
