"""A word-level linear-chain CRF over the token classifier's scores (Lample et al. 2016; BERT-CRF).

The classifier's logits at each word's first sub-token are the emission scores; the CRF adds a learned score per
tag pair (and per first tag) and is trained on the negative log-likelihood of the gold tag sequence of each window.
Transitions IOB2 forbids (``I-x`` after anything but ``B-x``/``I-x``) are masked out; a window may *start* with
``I-x`` (it can begin inside an entity), a text may not — :func:`synthner_shared.ner.encoding.best_tag_path` decodes
with the learned scores (:class:`~synthner_shared.ner.encoding.TagTransitions`, stored in ``encoding.json``).

The CRF's parameters live beside the Hugging Face model, not inside it, so the saved folder stays a plain
token-classification model (``transformers.pipeline`` loads it and decodes per token, without the transitions).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from synthner_shared.ner.encoding import IGNORE_INDEX, TagTransitions, iob2_may_follow

FORBIDDEN = -1e4
"""Score of a transition IOB2 forbids (``exp`` of it is 0 in fp32)."""


class ChainCRF(torch.nn.Module):
    """Start and transition scores over a model's IOB2 tags; zero at first (the classifier alone decides)."""

    forbidden: torch.Tensor

    def __init__(self, tags: Sequence[str]) -> None:
        super().__init__()
        size = len(tags)
        self.start = torch.nn.Parameter(torch.zeros(size))
        self.transitions = torch.nn.Parameter(torch.zeros(size, size))
        forbidden = torch.zeros(size, size)
        for p, previous in enumerate(tags):
            for t, tag in enumerate(tags):
                if not iob2_may_follow(previous, tag):
                    forbidden[p, t] = FORBIDDEN
        self.register_buffer("forbidden", forbidden, persistent=False)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per labelled word of a batch.

        ``logits`` is ``(batch, tokens, tags)``; ``labels`` is ``(batch, tokens)`` with the gold tag at each word's
        first sub-token and ``-100`` elsewhere (the ``first`` sub-token policy), so a row's labelled positions, in
        order, are its word sequence.
        """
        labelled = labels != IGNORE_INDEX
        counts = labelled.sum(dim=1)
        if int(counts.min()) < 1:
            raise ValueError("every window needs at least one labelled word")
        words = int(counts.max())
        # positions of each row's labelled tokens, in order (stable sort puts them first)
        order = torch.argsort((~labelled).to(torch.int8), dim=1, stable=True)[:, :words]
        emissions = logits.gather(1, order.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
        gold = labels.gather(1, order).clamp(min=0)
        present = torch.arange(words, device=logits.device).unsqueeze(0) < counts.unsqueeze(1)
        transitions = self.transitions + self.forbidden
        forward = self.start.unsqueeze(0) + emissions[:, 0]  # log-sum over paths ending in each tag
        path = self.start[gold[:, 0]] + emissions[:, 0].gather(1, gold[:, :1]).squeeze(1)  # the gold path's score
        for i in range(1, words):
            following = torch.logsumexp(forward.unsqueeze(2) + transitions + emissions[:, i].unsqueeze(1), dim=1)
            forward = torch.where(present[:, i : i + 1], following, forward)
            step = transitions[gold[:, i - 1], gold[:, i]] + emissions[:, i].gather(1, gold[:, i : i + 1]).squeeze(1)
            path = path + step * present[:, i]
        return (torch.logsumexp(forward, dim=1) - path).sum() / counts.sum()

    def tag_transitions(self) -> TagTransitions:
        """The learned scores, for decoding (forbidden transitions are the decoder's to enforce)."""
        return TagTransitions(
            tuple(self.start.detach().float().cpu().tolist()),
            tuple(tuple(row) for row in self.transitions.detach().float().cpu().tolist()),
        )
