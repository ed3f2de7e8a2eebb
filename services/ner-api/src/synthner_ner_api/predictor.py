"""The serving predictor: the shared windowed token classifier, tuned for latency on CPU.

Compared with the shared :class:`~synthner_shared.ner.predictor.SpanPredictor` (used for evaluation), it

- batches windows of similar length under a token budget, so little compute goes to padding;
- returns a score per entity (the mean probability of its words' decoded tags; a mention of an abbreviation the text
  defines gets its long form's score);
- runs the forward pass on ONNX Runtime by default (``runtime="onnx"``, :mod:`synthner_ner_api.onnx_runtime`), or
  on eager torch (``runtime="torch"``);
- can run int8 weights (dynamic quantisation of the Linear layers / MatMuls), served only when its strict F1 on a
  gold sample is within the configured tolerance of the fp32 model (see :mod:`synthner_ner_api.loading`).

Encoding, windows and decoding are the shared ones, so offsets and entity boundaries match training exactly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal, cast

import torch
from transformers import PreTrainedModel

from synthner_ner_api.models import SpanPrediction
from synthner_shared.ner.predictor import SpanPredictor, WordScores


def quantize_int8(model: PreTrainedModel) -> PreTrainedModel:
    """int8 dynamic quantisation of every Linear layer (weights int8, activations quantised on the fly)."""
    from torch.ao.quantization import quantize_dynamic  # noqa: PLC0415 - only the int8 path needs it

    quantized = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)  # type: ignore[no-untyped-call]
    return cast("PreTrainedModel", quantized)


Runtime = Literal["onnx", "torch"]
Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(input_ids, attention_mask) -> logits``."""


class ServingPredictor(SpanPredictor):
    """Character spans with scores for whole texts of any length; implements the API's ``Predictor`` port."""

    def __init__(
        self,
        base: SpanPredictor,
        max_batch_tokens: int = 8192,
        int8: bool = False,
        runtime: Runtime = "onnx",
        threads: int | None = None,
    ) -> None:
        model = base.model
        if int8 and runtime == "torch":
            model = quantize_int8(base.model)
        super().__init__(
            model,
            base.tokenizer,
            max_length=base.window + len(base.special),
            stride=base.stride,
            outside_bias=base.outside_bias,
            subtokens=base.subtokens,
            abbreviations=base.abbreviations,
            transitions=base.transitions,
        )
        self.max_batch_tokens = max_batch_tokens
        self.int8 = int8
        self.runtime = runtime
        self.threads = threads
        self.forward: Forward
        if runtime == "onnx":
            from synthner_ner_api.onnx_runtime import OnnxForward  # noqa: PLC0415 - onnxruntime loads only here

            self.forward = OnnxForward.export(base.model, int8=int8, threads=threads)
        else:
            self.forward = lambda ids, mask: self.model(input_ids=ids, attention_mask=mask).logits
        self.serving_info: dict[str, object] = {"precision": "int8" if int8 else "fp32", "runtime": runtime}

    @classmethod
    def load_for_serving(
        cls,
        folder: str | os.PathLike[str],
        *,
        int8: bool = False,
        threads: int | None = None,
        runtime: Runtime = "onnx",
    ) -> ServingPredictor:
        if threads is not None:
            torch.set_num_threads(threads)
        return cls(SpanPredictor.load(Path(folder), device="cpu"), int8=int8, runtime=runtime, threads=threads)

    def variant(self, *, int8: bool) -> ServingPredictor:
        """The same weights on the same runtime, in the other precision."""
        return ServingPredictor(self, self.max_batch_tokens, int8=int8, runtime=self.runtime, threads=self.threads)

    def _batches(self, jobs: Sequence[tuple[int, int, int]]) -> Iterator[Sequence[tuple[int, int, int]]]:
        """Consecutive jobs (sorted by length) whose padded size stays within the token budget."""
        start = 0
        while start < len(jobs):
            end = start + 1
            while end < len(jobs) and (end - start + 1) * (jobs[end][2] + len(self.special)) <= self.max_batch_tokens:
                end += 1
            yield jobs[start:end]
            start = end

    def _logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.forward(input_ids, attention_mask)

    def annotate(self, texts: Sequence[str]) -> list[list[SpanPrediction]]:
        return [self._spans(scored) for scored in self.score(texts)]

    def _spans(self, scored: WordScores) -> list[SpanPrediction]:
        return self.decode_scored(scored)
