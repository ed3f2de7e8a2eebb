"""Parsing of LLM replies into proposed mentions, with repair of the usual damage.

Two reply formats, one per prompt design:

- **JSON mention list**: ``{"mentions": [{"label": ..., "text": ...}, ...]}`` (the schema sent as structured output,
  :class:`MentionList`). Repairs: code fences and prose around the JSON, a bare list instead of the object, a
  ``{label: [texts]}`` mapping, trailing commas, a reply cut off mid-list (the complete items are kept), key
  aliases (``type``/``entity``/``mention``). Items of the wrong shape are dropped and counted.
- **Inline markup**: the note copied with ``<LABEL>…</LABEL>`` around each entity. Tags are recognised for the
  declared labels (any case); other ``<`` characters are text. The tagged mentions carry their position in the
  reply as a hint, and :mod:`synthner_annotator.alignment` places them in the *original* text, so a reply whose
  surrounding text the LLM altered still yields offsets of the original.

A reply with nothing usable raises :class:`MalformedReply` (retried by the backend, then reported as failed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from synthner_annotator.alignment import ProposedMention
from synthner_annotator.errors import MalformedReply


class MentionItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(description="One of the entity labels.")
    text: str = Field(description="The entity exactly as written in the note.")


class MentionList(BaseModel):
    """The structured-output schema of the JSON prompt design."""

    model_config = ConfigDict(extra="forbid")

    mentions: list[MentionItem] = Field(description="Every entity mention, in order of appearance in the note.")


@dataclass
class ParsedReply:
    mentions: list[ProposedMention] = field(default_factory=list)
    malformed_items: int = 0
    repaired: bool = False


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([\]}])")
_TEXT_KEYS = ("text", "mention", "entity", "span", "value")
_LABEL_KEYS = ("label", "type", "entity_type", "category", "tag")


def _candidates(reply: str) -> list[str]:
    """Pieces of the reply that may hold the JSON, most likely first."""
    pieces = [match.group(1) for match in _FENCE.finditer(reply)]
    pieces.append(reply)
    return pieces


def _decode(piece: str) -> tuple[Any, bool]:
    """Decode the first JSON value in ``piece``; returns (value, repaired). Raises ValueError if none."""
    piece = piece.strip()
    try:
        return json.loads(piece), False
    except json.JSONDecodeError:
        pass
    starts = [i for i in (piece.find("{"), piece.find("[")) if i >= 0]
    if not starts:
        raise ValueError("no JSON object or list")
    body = piece[min(starts) :]
    decoder = json.JSONDecoder()
    for attempt in (body, _TRAILING_COMMA.sub(r"\1", body)):
        try:
            value, _ = decoder.raw_decode(attempt)
            return value, True
        except json.JSONDecodeError:
            continue
    return _close_truncated(_TRAILING_COMMA.sub(r"\1", body)), True


def _close_truncated(body: str) -> Any:
    """A reply cut off mid-list: keep everything up to the last complete item and close the brackets."""
    decoder = json.JSONDecoder()
    cut = body.rfind("}")
    while cut > 0:
        prefix = body[: cut + 1]
        stack: list[str] = []
        in_string = escaped = False
        for char in prefix:
            if in_string:
                if escaped:
                    escaped = False
                elif char == "\\":
                    escaped = True
                elif char == '"':
                    in_string = False
            elif char == '"':
                in_string = True
            elif char in "[{":
                stack.append("]" if char == "[" else "}")
            elif char in "]}" and stack:
                stack.pop()
        if not in_string:
            try:
                value, _ = decoder.raw_decode(prefix + "".join(reversed(stack)))
                return value
            except json.JSONDecodeError:
                pass
        cut = body.rfind("}", 0, cut)
    raise ValueError("not JSON, and no complete item to keep")


def _first(item: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {str(k).casefold(): v for k, v in item.items()}
    for key in keys:
        if key in lowered:
            return lowered[key]
    return None


def _items(value: Any) -> tuple[list[tuple[Any, Any]], bool]:
    """(label, text) pairs from the decoded JSON; the flag says whether a non-canonical shape was accepted."""
    if isinstance(value, dict):
        inner = _first(value, ("mentions", "entities", "annotations"))
        if isinstance(inner, list):
            return _items(inner)[0], False
        if inner is None and value and all(isinstance(v, list) for v in value.values()):
            return [(label, text) for label, texts in value.items() for text in texts], True
        if _first(value, _TEXT_KEYS) is not None:
            return [(_first(value, _LABEL_KEYS), _first(value, _TEXT_KEYS))], True
        raise ValueError("a JSON object without a 'mentions' list")
    if isinstance(value, list):
        pairs: list[tuple[Any, Any]] = []
        for item in value:
            if isinstance(item, dict):
                pairs.append((_first(item, _LABEL_KEYS), _first(item, _TEXT_KEYS)))
            elif isinstance(item, list) and len(item) == 2:
                pairs.append((item[0], item[1]))
            else:
                pairs.append((None, None))
        return pairs, True
    raise ValueError(f"a JSON {type(value).__name__}, not an object or list")


def parse_mention_list(reply: str) -> ParsedReply:
    """Mentions from a JSON-design reply. Raises :class:`MalformedReply` when no JSON can be recovered."""
    if not reply.strip():
        raise MalformedReply("empty reply")
    errors: list[str] = []
    for piece in _candidates(reply):
        try:
            value, repaired = _decode(piece)
            pairs, reshaped = _items(value)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        except RecursionError:  # the json module recurses per nesting level; a hostile reply must not crash us
            errors.append("JSON nested too deeply")
            continue
        parsed = ParsedReply(repaired=repaired or reshaped or piece is not reply)
        for label, text in pairs:
            if isinstance(label, str) and isinstance(text, str) and label.strip() and text.strip():
                parsed.mentions.append(ProposedMention(label=label, text=text))
            else:
                parsed.malformed_items += 1
        return parsed
    raise MalformedReply(f"reply is not a mention list ({errors[-1]})")


def parse_inline_markup(reply: str, labels: Collection[str]) -> ParsedReply:
    """Mentions from an inline-markup reply, each with its offset in the reply's plain text as a hint."""
    if not reply.strip():
        raise MalformedReply("empty reply")
    names = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    tag = re.compile(rf"<\s*(/?)\s*({names})\s*>", re.IGNORECASE)
    canonical = {label.casefold(): label for label in labels}
    parsed = ParsedReply()
    plain: list[str] = []
    plain_length = 0
    open_label: str | None = None
    open_at = 0
    position = 0
    for match in tag.finditer(reply):
        piece = reply[position : match.start()]
        plain.append(piece)
        plain_length += len(piece)
        position = match.end()
        closing, label = match.group(1) == "/", canonical[match.group(2).casefold()]
        if not closing:
            if open_label is not None:
                parsed.malformed_items += 1  # nested or unclosed: the outer tag is abandoned
            open_label, open_at = label, plain_length
        elif open_label == label:
            text = "".join(plain)[open_at:plain_length]
            if text.strip():
                parsed.mentions.append(ProposedMention(label=label, text=text, hint=open_at))
            else:
                parsed.malformed_items += 1
            open_label = None
        else:
            parsed.malformed_items += 1  # a closing tag without its opening tag
    if open_label is not None:
        parsed.malformed_items += 1
    plain.append(reply[position:])
    return parsed


def plain_text_of_markup(reply: str, labels: Collection[str]) -> str:
    """The reply with the label tags removed (what the LLM claims the note says)."""
    names = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    return re.sub(rf"<\s*/?\s*(?:{names})\s*>", "", reply, flags=re.IGNORECASE)
