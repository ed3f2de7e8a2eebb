"""Test support: a tiny, randomly initialised causal LM with a tokenizer trained on the given texts, built offline,
and the event a finished adaptation announces.

Tests (and the adaptation benchmark's fallback) use the model instead of a real one: a few hundred thousand
parameters, so a CPU adapts it in seconds, and a byte-level BPE vocabulary learnt from the notes, so no hub access is
needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from synthner_shared.contracts import AdaptationRequested, GeneratorAdapted

SPECIAL_TOKENS = ("<|endoftext|>", "<pad>")


def tiny_tokenizer(texts: Sequence[str], vocab_size: int = 512) -> object:
    """A byte-level BPE fast tokenizer learnt from ``texts`` (EOS ``<|endoftext|>``, pad ``<pad>``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: PLC0415 - test support
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415

    backend = Tokenizer(models.BPE(unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend, eos_token=SPECIAL_TOKENS[0], bos_token=SPECIAL_TOKENS[0], pad_token=SPECIAL_TOKENS[1]
    )


def write_tiny_causal_lm(
    folder: Path,
    texts: Sequence[str],
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    layers: int = 2,
    context: int = 256,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised Llama-style causal LM and its tokenizer to ``folder``; returns ``folder``."""
    import torch  # noqa: PLC0415 - test support
    from transformers import LlamaConfig, LlamaForCausalLM  # noqa: PLC0415

    tokenizer = tiny_tokenizer(texts, vocab_size)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
        eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


def adapted_event(request: AdaptationRequested, out: Path, producer: str = "trainer") -> GeneratorAdapted:
    """The ``GeneratorAdapted`` a finished adaptation of ``request`` into ``out`` announces, with fixed figures: what
    a stand-in for the adaptation returns."""
    return GeneratorAdapted(
        correlation_id=request.correlation_id,
        producer=producer,
        artifact_uri=str(out),
        model_uri=str(out / "model"),
        leak_reference_uri=str(out / "leak_reference.npz"),
        prefix_file_uri=str(out / "heldout_prefixes.jsonl"),
        base_model="fake",
        method="full",
        train_notes=9,
        heldout_notes=1,
        train_tokens=1000,
        steps=3,
        perplexity_before=50.0,
        perplexity_after=20.0,
        ngram5_recall_before=0.0,
        ngram5_recall_after=0.1,
    )
