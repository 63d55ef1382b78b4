"""A character- or word-level vocabulary fitted on the training texts (no external vocabulary).

:class:`TextVocab` turns text into token ids with the same call interface as a
transformers tokenizer, as far as :func:`nemo_cls_dask.tokenization.encode` and the
inference engine use it (``vocab(texts, truncation=..., max_length=...)["input_ids"]``
and ``vocab.pad_token_id``), so light models run through the unchanged engine and
operator. It is saved as one JSON file (:data:`VOCAB_FILE`) beside the model weights and
loaded without transformers.

Ids
    ``0`` is padding (``<pad>``), ``1`` is the unknown token (``<unk>``); fitted tokens
    follow, most frequent first (ties by code point order, so fitting is deterministic).
    Any character or word not kept by the fit (unseen, rarer than ``min_freq``, or cut
    by ``max_size``) maps to the unknown id, never to an error. No other special tokens
    are added (``add_special_tokens`` is accepted and ignored).

Normalisation, applied the same way when fitting and when encoding
    1. Unicode normalisation (``unicode_normalization``, default ``"NFKC"``: full-width
       letters, ligatures and compatibility forms become their plain characters;
       ``None`` keeps the text as it is).
    2. Lowercasing (``lowercase=True`` by default; a smaller vocabulary and robustness to
       ``CAPS``, at the cost of case information).
    3. Whitespace: leading/trailing whitespace is dropped and every run of whitespace
       (spaces, tabs, newlines) becomes one space, so layout does not spend characters.
    Characters (``level="char"``) are the code points of the normalised text, the space
    included. Words (``level="word"``) are runs of letters/digits/underscore, and each
    other non-space character on its own (``"don't!"`` -> ``don ' t !``).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelLoadError

#: File name of a saved vocabulary inside a checkpoint folder.
VOCAB_FILE = "text_vocab.json"
FORMAT = "nemo_cls_dask.text_vocab"
FORMAT_VERSION = 1
LEVELS = ("char", "word")
NORMALIZATIONS = (None, "NFC", "NFKC", "NFD", "NFKD")
PAD_TOKEN, UNK_TOKEN = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1

_WHITESPACE = re.compile(r"\s+")
_WORDS = re.compile(r"\w+|[^\w\s]")


class TextVocab:
    """Token <-> id mapping of characters or words, fitted with :meth:`fit`.

    Parameters
    ----------
    level
        ``"char"`` (every character is a token: robust to typos and unseen words) or
        ``"word"``.
    lowercase, unicode_normalization
        Normalisation steps (see the module docstring).
    min_freq
        Keep tokens seen at least this many times in the fitted texts.
    max_size
        Upper bound on the vocabulary size, the two special ids included (None: no bound).
    """

    def __init__(
        self,
        level: str = "char",
        *,
        lowercase: bool = True,
        unicode_normalization: str | None = "NFKC",
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> None:
        if level not in LEVELS:
            raise InputError(f"level must be one of {LEVELS}, got {level!r}.")
        if unicode_normalization not in NORMALIZATIONS:
            raise InputError(f"unicode_normalization must be one of {NORMALIZATIONS}, got {unicode_normalization!r}.")
        if not isinstance(lowercase, bool):
            raise InputError(f"lowercase must be True or False, got {lowercase!r}.")
        if isinstance(min_freq, bool) or not isinstance(min_freq, int) or min_freq < 1:
            raise InputError(f"min_freq must be a positive integer, got {min_freq!r}.")
        if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 3):
            raise InputError(f"max_size must be None or an integer >= 3 (two special ids and one token), got {max_size!r}.")
        self.level = level
        self.lowercase = lowercase
        self.unicode_normalization = unicode_normalization
        self.min_freq = min_freq
        self.max_size = max_size
        self.tokens: list[str] = [PAD_TOKEN, UNK_TOKEN]
        self._ids: dict[str, int] = {}

    # ------------------------------------------------------------------ text -> tokens

    def normalize(self, text: str) -> str:
        """The text after the normalisation steps (what the tokens are cut from)."""
        if self.unicode_normalization is not None:
            text = unicodedata.normalize(self.unicode_normalization, text)
        if self.lowercase:
            text = text.lower()
        return _WHITESPACE.sub(" ", text).strip()

    def split(self, text: str) -> list[str]:
        """The tokens of ``text`` (normalised): characters or words."""
        text = self.normalize(text)
        return list(text) if self.level == "char" else _WORDS.findall(text)

    # ------------------------------------------------------------------ fitting

    def fit(self, texts: Iterable[Any]) -> TextVocab:
        """Count tokens over ``texts`` (non-strings are skipped) and keep the frequent ones."""
        counts: Counter = Counter()
        for text in texts:
            if isinstance(text, str):
                counts.update(self.split(text))
        return self.fit_counts(counts)

    def fit_counts(self, counts: Counter) -> TextVocab:
        """Build the vocabulary from token counts (e.g. summed over dask partitions)."""
        kept = sorted((token for token, n in counts.items() if n >= self.min_freq), key=lambda t: (-counts[t], t))
        if self.max_size is not None:
            kept = kept[: self.max_size - 2]
        self.tokens = [PAD_TOKEN, UNK_TOKEN, *kept]
        self._ids = {token: i for i, token in enumerate(self.tokens) if i >= 2}
        return self

    @property
    def fitted(self) -> bool:
        return bool(self._ids)

    def __len__(self) -> int:
        return len(self.tokens)

    # ------------------------------------------------------------------ the tokenizer interface

    @property
    def pad_token_id(self) -> int:
        return PAD_ID

    @property
    def unk_token_id(self) -> int:
        return UNK_ID

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """Ids of one text; unknown tokens get :data:`UNK_ID`; cut to ``max_length`` ids."""
        ids = self._ids
        tokens = self.split(text)
        if max_length is not None:
            tokens = tokens[:max_length]
        return [ids.get(token, UNK_ID) for token in tokens]

    def __call__(
        self,
        texts: str | Sequence[str],
        *,
        truncation: bool = False,
        max_length: int | None = None,
        padding: bool | str = False,
        add_special_tokens: bool = True,
        return_attention_mask: bool = False,
        return_token_type_ids: bool = False,
        **_ignored: Any,
    ) -> dict[str, Any]:
        """Tokenize like a transformers tokenizer: ``{"input_ids": [[...], ...]}``.

        ``truncation=True`` cuts each row to ``max_length`` ids. ``padding``: False (ragged,
        what the engine asks for), True/``"longest"`` or ``"max_length"`` (pad with id 0).
        ``return_attention_mask`` adds ``"attention_mask"``. There are no special tokens
        to add, and no token type ids.
        """
        if not self.fitted:
            raise InputError("This TextVocab is not fitted; call fit(texts) or TextVocab.load(path).")
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        bad = [text for text in batch if not isinstance(text, str)]
        if bad:
            raise InputError(f"TextVocab tokenizes strings, got {type(bad[0]).__name__} {bad[0]!r}.")
        limit = max_length if truncation else None
        ids = [self.encode(text, limit) for text in batch]
        return tokenizer_output(ids, single, padding, max_length, return_attention_mask, PAD_ID)

    def decode(self, ids: Iterable[int]) -> str:
        """Tokens of ``ids`` joined (characters directly, words with spaces); padding dropped."""
        tokens = [self.tokens[i] if 0 <= i < len(self.tokens) else UNK_TOKEN for i in ids if i != PAD_ID]
        return "".join(tokens) if self.level == "char" else " ".join(tokens)

    # ------------------------------------------------------------------ saving and loading

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "level": self.level,
            "lowercase": self.lowercase,
            "unicode_normalization": self.unicode_normalization,
            "min_freq": self.min_freq,
            "max_size": self.max_size,
            "tokens": list(self.tokens),
        }

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary as JSON; ``path`` is a file or a folder (then :data:`VOCAB_FILE`)."""
        if not self.fitted:
            raise InputError("This TextVocab is not fitted; nothing to save.")
        path = Path(path)
        if path.is_dir():
            path = path / VOCAB_FILE
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=0), encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "vocabulary") -> TextVocab:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelLoadError(f"{source} is not a nemo_cls_dask text vocabulary (no \"format\": {FORMAT!r}).")
        if data.get("version") != FORMAT_VERSION:
            raise ModelLoadError(f"{source} has vocabulary format version {data.get('version')!r}; this release reads {FORMAT_VERSION}.")
        tokens = data.get("tokens")
        if (
            not isinstance(tokens, list)
            or tokens[:2] != [PAD_TOKEN, UNK_TOKEN]
            or len(tokens) < 3
            or not all(isinstance(t, str) for t in tokens)
            or len(set(tokens)) != len(tokens)
        ):
            raise ModelLoadError(f"{source}: 'tokens' must be a list of distinct strings starting with {PAD_TOKEN!r}, {UNK_TOKEN!r}.")
        try:
            vocab = cls(
                data.get("level", "char"),
                lowercase=data.get("lowercase", True),
                unicode_normalization=data.get("unicode_normalization", "NFKC"),
                min_freq=data.get("min_freq", 1),
                max_size=data.get("max_size"),
            )
        except InputError as error:
            raise ModelLoadError(f"{source}: {error}") from None
        vocab.tokens = list(tokens)
        vocab._ids = {token: i for i, token in enumerate(tokens) if i >= 2}
        return vocab

    @classmethod
    def load(cls, path: str | Path) -> TextVocab:
        """Read a vocabulary written by :meth:`save` (a file, or a folder holding :data:`VOCAB_FILE`)."""
        path = Path(path)
        if path.is_dir():
            path = path / VOCAB_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"Cannot read the vocabulary {path}: {error}") from error
        return cls.from_dict(data, str(path))

    def __repr__(self) -> str:
        state = f"{len(self)} ids" if self.fitted else "not fitted"
        return f"TextVocab(level={self.level!r}, lowercase={self.lowercase}, {state})"


def tokenizer_output(ids: list[list[int]], single: bool, padding: bool | str, max_length: int | None,
                     return_attention_mask: bool, pad_id: int) -> dict[str, Any]:
    """``{"input_ids": ...}`` (and ``"attention_mask"``) as a transformers tokenizer returns them,
    padded to the longest row or ``max_length`` when ``padding`` asks; for the light tokenizers."""
    lengths = [len(row) for row in ids]
    if padding in (True, "longest", "max_length"):
        width = max_length if padding == "max_length" and max_length is not None else max(lengths, default=0)
        ids = [row + [pad_id] * (width - len(row)) for row in ids]
    elif padding not in (False, None, "do_not_pad"):
        raise InputError(f"padding must be False, True, 'longest' or 'max_length', got {padding!r}.")
    out: dict[str, Any] = {"input_ids": ids[0] if single else ids}
    if return_attention_mask:
        masks = [[1] * n + [0] * (len(row) - n) for row, n in zip(ids, lengths)]
        out["attention_mask"] = masks[0] if single else masks
    return out


def vocab_fingerprint(path: str | Path) -> str:
    """SHA-256 of a saved vocabulary file: equal files tokenize alike (one-pass ``classify``
    then tokenizes shared text once). Cached by the file's size and modification time."""
    stat = Path(path).stat()
    return _hash_file(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _hash_file(path: str, _size: int, _mtime: int) -> str:
    return "text_vocab:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
