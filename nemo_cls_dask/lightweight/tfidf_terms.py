"""Text -> TF-IDF term ids, without scikit-learn: the tokenizer of the ``tfidf-linear`` layout.

:class:`TermAnalyzer` cuts a text into the terms a fitted scikit-learn ``TfidfVectorizer``
counts (same settings, same terms): lowercasing and accent stripping, then word n-grams
(tokens found by ``token_pattern``, stop words removed first) or character n-grams
(``"char"``: over the text with runs of whitespace made one space; ``"char_wb"``: inside
each word padded with one space on both sides). It is written from scikit-learn's
documented behaviour and tested term for term against ``build_analyzer()``, so a saved
checkpoint needs no scikit-learn, and no pickle, to run.

:class:`TermTokenizer` maps those terms to ids with the call interface of a transformers
tokenizer, as far as the inference engine uses it, so the TF-IDF student runs through the
unchanged operator, batching and CLI:

* ``0`` is padding, ``1`` starts every non-empty text (so a text whose terms are all
  unknown still gets a row, and the linear model's intercept decides it, as in
  scikit-learn), and term ``j`` of the vocabulary is id ``j + 2``;
* terms not in the vocabulary are dropped, as ``TfidfVectorizer.transform`` drops them;
* ``truncation=True`` keeps the first ``max_length`` ids (the checkpoint's ``max_len``:
  set it above the longest document's term count for results equal to scikit-learn's).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from ..errors import InputError, ModelLoadError
from .vocab import tokenizer_output

PAD_ID, START_ID, FIRST_TERM_ID = 0, 1, 2
ANALYZERS = ("word", "char", "char_wb")
STRIP_ACCENTS = (None, "ascii", "unicode")
#: An untrusted config's regular expression is compiled and run on every text: keep it short.
MAX_TOKEN_PATTERN_CHARS = 1_000
#: n-gram orders above this are refused (the number of terms per text grows with it).
MAX_NGRAM = 16

_RUNS_OF_WHITESPACE = re.compile(r"\s\s+")


def _strip_accents_ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _strip_accents_unicode(text: str) -> str:
    if text.isascii():
        return text
    return "".join(char for char in unicodedata.normalize("NFKD", text) if not unicodedata.combining(char))


class TermAnalyzer:
    """The terms of a text, as a ``TfidfVectorizer`` with these settings counts them.

    Parameters mirror ``TfidfVectorizer``'s: ``analyzer`` (``"word"``, ``"char"``,
    ``"char_wb"``), ``ngram_range`` ``(min_n, max_n)``, ``lowercase``, ``strip_accents``
    (None, ``"ascii"``, ``"unicode"``), ``token_pattern`` (word analyzer; a regular
    expression with at most one group) and ``stop_words`` (word analyzer; a list, or None).
    """

    def __init__(self, analyzer: str = "word", ngram_range: Sequence[int] = (1, 1), lowercase: bool = True,
                 strip_accents: str | None = None, token_pattern: str | None = r"(?u)\b\w\w+\b",
                 stop_words: Sequence[str] | None = None) -> None:
        if analyzer not in ANALYZERS:
            raise InputError(f"analyzer must be one of {ANALYZERS}, got {analyzer!r}.")
        if (not isinstance(ngram_range, (list, tuple)) or len(ngram_range) != 2
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in ngram_range)
                or not 1 <= ngram_range[0] <= ngram_range[1] <= MAX_NGRAM):
            raise InputError(f"ngram_range must be (min_n, max_n) with 1 <= min_n <= max_n <= {MAX_NGRAM}, got {ngram_range!r}.")
        if strip_accents not in STRIP_ACCENTS:
            raise InputError(f"strip_accents must be one of {STRIP_ACCENTS}, got {strip_accents!r}.")
        if not isinstance(lowercase, bool):
            raise InputError(f"lowercase must be True or False, got {lowercase!r}.")
        self.analyzer = analyzer
        self.ngram_range = (int(ngram_range[0]), int(ngram_range[1]))
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.token_pattern = token_pattern
        self.stop_words = None if stop_words is None else sorted(set(stop_words))
        self._pattern = self._compile(token_pattern) if analyzer == "word" else None
        self._stop = frozenset(self.stop_words or ())

    @staticmethod
    def _compile(pattern: Any) -> re.Pattern:
        if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_TOKEN_PATTERN_CHARS:
            raise InputError(f"token_pattern must be a regular expression of 1 to {MAX_TOKEN_PATTERN_CHARS} characters, "
                             f"got {str(pattern)[:80]!r}.")
        try:
            compiled = re.compile(pattern)
        except re.error as error:
            raise InputError(f"token_pattern {pattern!r} is not a valid regular expression: {error}.") from None
        if compiled.groups > 1:
            raise InputError(f"token_pattern {pattern!r} has {compiled.groups} groups; at most one is allowed.")
        return compiled

    def settings(self) -> dict[str, Any]:
        """The constructor arguments, as saved in ``config.json``."""
        return {"analyzer": self.analyzer, "ngram_range": list(self.ngram_range), "lowercase": self.lowercase,
                "strip_accents": self.strip_accents, "token_pattern": self.token_pattern, "stop_words": self.stop_words}

    @classmethod
    def from_settings(cls, settings: Any, source: str = "config.json") -> TermAnalyzer:
        if not isinstance(settings, dict):
            raise ModelLoadError(f"{source}: the analyzer settings must be a JSON object.")
        unknown = sorted(set(settings) - {"analyzer", "ngram_range", "lowercase", "strip_accents", "token_pattern", "stop_words"})
        if unknown:
            raise ModelLoadError(f"{source}: unknown analyzer settings {unknown}.")
        stop_words = settings.get("stop_words")
        if stop_words is not None and (not isinstance(stop_words, list) or not all(isinstance(w, str) for w in stop_words)):
            raise ModelLoadError(f"{source}: stop_words must be a list of strings or null.")
        try:
            return cls(**settings)
        except (InputError, TypeError) as error:
            raise ModelLoadError(f"{source}: {error}") from None

    def preprocess(self, text: str) -> str:
        """Lowercasing, then accent stripping (the order scikit-learn uses)."""
        if self.lowercase:
            text = text.lower()
        if self.strip_accents == "ascii":
            text = _strip_accents_ascii(text)
        elif self.strip_accents == "unicode":
            text = _strip_accents_unicode(text)
        return text

    def __call__(self, text: str) -> list[str]:
        """Every term occurrence of ``text`` (a term counted twice appears twice)."""
        text = self.preprocess(text)
        if self.analyzer == "word":
            return self._word_ngrams(text)
        text = _RUNS_OF_WHITESPACE.sub(" ", text)
        if self.analyzer == "char":
            return self._char_ngrams(text)
        return self._char_wb_ngrams(text)

    def _word_ngrams(self, text: str) -> list[str]:
        tokens = [token for token in self._pattern.findall(text) if token not in self._stop]
        low, high = self.ngram_range
        terms = tokens if low == 1 else []
        for n in range(max(low, 2), min(high, len(tokens)) + 1):
            terms = terms + [" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        return list(terms)

    def _char_ngrams(self, text: str) -> list[str]:
        low, high = self.ngram_range
        return [text[i:i + n] for n in range(low, min(high, len(text)) + 1) for i in range(len(text) - n + 1)]

    def _char_wb_ngrams(self, text: str) -> list[str]:
        low, high = self.ngram_range
        terms = []
        for word in text.split():
            padded = f" {word} "
            for n in range(low, high + 1):
                if n >= len(padded):  # the whole padded word, once, for this and every longer n
                    terms.append(padded)
                    break
                terms.extend(padded[i:i + n] for i in range(len(padded) - n + 1))
        return terms


class TermTokenizer:
    """Texts -> term ids (see the module docstring), called like a transformers tokenizer."""

    pad_token_id = PAD_ID
    unk_token_id = None

    def __init__(self, analyzer: TermAnalyzer, terms: Sequence[str]) -> None:
        self.analyzer = analyzer
        self.terms = list(terms)
        self._ids = {term: FIRST_TERM_ID + j for j, term in enumerate(self.terms)}

    def __len__(self) -> int:
        return FIRST_TERM_ID + len(self.terms)

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """Ids of one text: :data:`START_ID`, then its known terms' ids (none for ``""``)."""
        if text == "":
            return []
        ids = self._ids
        row = [START_ID] + [ids[term] for term in self.analyzer(text) if term in ids]
        return row if max_length is None else row[:max_length]

    def __call__(self, texts: str | Sequence[str], *, truncation: bool = False, max_length: int | None = None,
                 padding: bool | str = False, return_attention_mask: bool = False, **_ignored: Any) -> dict[str, Any]:
        """``{"input_ids": ...}`` (and ``"attention_mask"``) like a transformers tokenizer.
        ``add_special_tokens`` and token type ids are accepted and ignored."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        bad = [text for text in batch if not isinstance(text, str)]
        if bad:
            raise InputError(f"TermTokenizer tokenizes strings, got {type(bad[0]).__name__} {bad[0]!r}.")
        ids = [self.encode(text, max_length if truncation else None) for text in batch]
        return tokenizer_output(ids, single, padding, max_length, return_attention_mask, PAD_ID)

    def __repr__(self) -> str:
        return f"TermTokenizer(analyzer={self.analyzer.analyzer!r}, ngram_range={self.analyzer.ngram_range}, {len(self.terms)} terms)"
