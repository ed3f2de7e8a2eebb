"""The serving predictor: the shared windowed tagger on ONNX Runtime, from the ONNX shipped in the version folder.

Tokenisation, windows, batching and decoding are :class:`~synthner_shared.ner.windowed.WindowedTagger`'s, the code
the trainer evaluates with, so offsets, entity boundaries and scores match evaluation. The forward pass is

- ONNX Runtime by default (``runtime="onnx"``): ``model.onnx`` (fp32) or ``model.int8.onnx`` (int8 dynamic
  quantisation), written by the trainer into the version folder at publish time
  (:mod:`synthner_shared.ner.onnx`). No torch is needed or imported. A folder published before ONNX was shipped is
  exported at load where torch is installed, and refused with a clear reason where it is not (the registry then
  falls back to the newest version that loads);
- eager torch (``runtime="torch"``, needs torch: for comparisons and benchmarks).

int8 weights are served only when their strict F1 on a gold sample is within the configured tolerance of the fp32
model's (see :mod:`synthner_ner_api.loading`). Windows are batched longest first under a token budget, each batch
cut to its own longest row, so little compute goes to padding.

Each span carries a score: the mean probability of its words' decoded tags (a mention of an abbreviation the text
defines gets its long form's score).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from synthner_ner_api.models import SpanPrediction
from synthner_shared.ner.onnx import INT8_WINDOWS_PER_PASS
from synthner_shared.ner.windowed import WindowedTagger, token_budget_batches

if TYPE_CHECKING:
    from synthner_shared.ner.predictor import SpanPredictor

__all__ = ["Runtime", "ServingPredictor", "token_budget_batches"]

Runtime = Literal["onnx", "torch"]
DEFAULT_MAX_BATCH_TOKENS = 1024
"""Tokens per forward pass, padded (8 windows of 128). Smaller passes keep the activations in the CPU's caches: with
all-MiniLM-L6-v2 on a 2-core AMD EPYC (AVX-512), fp32 served 38-40 NCBI-disease abstracts/s in passes of 4-8 windows
against 31-33 in passes of 64 (the former 8,192-token budget), and 29-33 one window at a time."""


def _quantized_torch(base: SpanPredictor) -> SpanPredictor:
    """A copy of ``base`` whose Linear layers are int8 dynamically quantised (the torch runtime's int8)."""
    import torch  # noqa: PLC0415 - the torch runtime only
    from torch.ao.quantization import quantize_dynamic  # noqa: PLC0415

    quantized = copy.copy(base)
    quantized.model = quantize_dynamic(base.model, {torch.nn.Linear}, dtype=torch.qint8)  # type: ignore[no-untyped-call]
    return quantized


class ServingPredictor:
    """Character spans with scores for whole texts of any length; implements the API's ``Predictor`` port."""

    def __init__(
        self,
        tagger: WindowedTagger,
        *,
        runtime: Runtime,
        int8: bool = False,
        folder: Path | None = None,
        threads: int | None = None,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        torch_base: SpanPredictor | None = None,
    ) -> None:
        # A copy: the token budget is what bounds a batch here (the window count only has to let it), and the
        # given tagger stays as it was.
        self.tagger = copy.copy(tagger)
        self.tagger.batch_size = INT8_WINDOWS_PER_PASS if int8 else max_batch_tokens
        self.tagger.max_batch_tokens = max_batch_tokens
        self.runtime: Runtime = runtime
        self.int8 = int8
        self.folder = folder
        self.threads = threads
        self.max_batch_tokens = max_batch_tokens
        self._torch_base = torch_base
        self.serving_info: dict[str, object] = {"precision": "int8" if int8 else "fp32", "runtime": runtime}

    @classmethod
    def load_for_serving(
        cls,
        folder: str | os.PathLike[str],
        *,
        int8: bool = False,
        threads: int | None = None,
        runtime: Runtime = "onnx",
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    ) -> ServingPredictor:
        """A version folder on ONNX Runtime (its shipped graph) or, with ``runtime="torch"``, on eager torch."""
        path = Path(folder)
        if runtime == "torch":
            import torch  # noqa: PLC0415 - the torch runtime only

            from synthner_shared.ner.predictor import SpanPredictor  # noqa: PLC0415

            if threads is not None:
                torch.set_num_threads(threads)
            return cls.from_torch(SpanPredictor.load(path, device="cpu"), max_batch_tokens, int8=int8, folder=path)
        from synthner_shared.ner.onnx import OnnxSpanPredictor  # noqa: PLC0415 - onnxruntime loads only here

        tagger = OnnxSpanPredictor.load(path, int8=int8, threads=threads)
        return cls(tagger, runtime="onnx", int8=int8, folder=path, threads=threads, max_batch_tokens=max_batch_tokens)

    @classmethod
    def from_torch(
        cls,
        base: SpanPredictor,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        *,
        int8: bool = False,
        folder: Path | None = None,
    ) -> ServingPredictor:
        """``base`` (a torch predictor as loaded, fp32, with every decoding option it holds) served on eager torch."""
        tagger = _quantized_torch(base) if int8 else base
        return cls(
            tagger, runtime="torch", int8=int8, folder=folder, max_batch_tokens=max_batch_tokens, torch_base=base
        )

    def variant(self, *, int8: bool) -> ServingPredictor:
        """The same model on the same runtime, in the other precision (ONNX: the folder's other shipped graph)."""
        if self._torch_base is not None:
            return ServingPredictor.from_torch(self._torch_base, self.max_batch_tokens, int8=int8, folder=self.folder)
        if self.folder is None:
            raise ValueError("a serving predictor not loaded from a folder has no other precision to load")
        return ServingPredictor.load_for_serving(
            self.folder, int8=int8, threads=self.threads, runtime=self.runtime, max_batch_tokens=self.max_batch_tokens
        )

    @property
    def tokenizer(self) -> Any:
        return self.tagger.tokenizer

    @property
    def window(self) -> int:
        """Tokens of text per window (without the special tokens)."""
        return self.tagger.window

    @property
    def stride(self) -> int:
        return self.tagger.stride

    @property
    def labels(self) -> list[str]:
        return self.tagger.labels

    def annotate(self, texts: Sequence[str]) -> list[list[SpanPrediction]]:
        return self.tagger.predict_scored(texts)
