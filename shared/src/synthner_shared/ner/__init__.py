"""NER encoding shared by trainer, annotator and NER API: spans <-> IOB2 token labels, windows (torch-free).

The torch-based :mod:`synthner_shared.ner.predictor` is imported explicitly where a model runs (``model`` extra).
"""

from synthner_shared.ner.encoding import (
    IGNORE_INDEX,
    CharSpan,
    EncodedWindow,
    LabelOutsideSetError,
    RoundTrip,
    SlowTokenizerError,
    SpecialTokens,
    SubtokenPolicy,
    TagTransitions,
    TokenizedText,
    best_tag_path,
    decode_word_tags,
    encode_windows,
    iob2_round_trip,
    iob2_tags,
    merge_window_predictions,
    plan_windows,
    split_words_at_punctuation,
    token_label_ids,
    tokenize,
    word_scores,
    word_tags,
)

__all__ = [
    "IGNORE_INDEX",
    "CharSpan",
    "EncodedWindow",
    "LabelOutsideSetError",
    "RoundTrip",
    "SlowTokenizerError",
    "SpecialTokens",
    "SubtokenPolicy",
    "TagTransitions",
    "TokenizedText",
    "best_tag_path",
    "decode_word_tags",
    "encode_windows",
    "iob2_round_trip",
    "iob2_tags",
    "merge_window_predictions",
    "plan_windows",
    "split_words_at_punctuation",
    "token_label_ids",
    "tokenize",
    "word_scores",
    "word_tags",
]
