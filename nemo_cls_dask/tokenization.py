"""Text cleaning and tokenization into ragged token ids: no padding happens here.

Padding every row to ``max_length`` up front (what CrossFit does) wastes most of the
compute on short text. Here each text becomes just its own ids, stored flat with offsets,
and :mod:`nemo_cls_dask.batching` pads each batch only to its own longest row.

Limits on untrusted text: a fast tokenizer keeps hundreds of bytes per token of a text it
is given, even when it truncates the result, so memory grows with the text's length.
So no more than :func:`default_max_chars` characters of a row reach the tokenizer
(``max_chars`` overrides it), and long documents are tokenized in pieces of at most
:data:`PIECE_CHARS` characters: memory per row is bounded whatever its content.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError

#: UTF-16 surrogate code points. A Python ``str`` decoded from valid UTF-8 never holds
#: them, but strings built in Python (or read from JSON ``"\\ud800"`` escapes) can, and the
#: tokenizer cannot encode them (``UnicodeEncodeError``).
_SURROGATES = re.compile("[\ud800-\udfff]")

#: Characters per token the default character cap allows. Natural text averages 3 to 6
#: characters per token; 32 leaves room for long words, URLs and runs of whitespace, so
#: the cap changes no result on ordinary text while bounding the tokenizer's work.
CHARS_PER_TOKEN = 32
#: With long-document windows, the default cap is this many times the truncation cap:
#: 64 x 32 x 512 = 1,048,576 characters for a 512-token model.
WINDOWED_CAP_FACTOR = 64
#: Long documents reach the tokenizer in pieces of at most this many characters, cut at
#: whitespace where there is some (see :func:`text_pieces`).
PIECE_CHARS = 100_000


def default_max_chars(max_length: int, windowed: bool = False) -> int:
    """The characters of a row that reach the tokenizer when ``max_chars`` is not given.

    ``max_length * CHARS_PER_TOKEN`` when rows are truncated to ``max_length`` tokens
    (16,384 characters for 512 tokens), ``WINDOWED_CAP_FACTOR`` times that when long
    documents are cut into windows.
    """
    return int(max_length) * CHARS_PER_TOKEN * (WINDOWED_CAP_FACTOR if windowed else 1)


def _fix_surrogates(text: str) -> str:
    """Join surrogate pairs into their character and replace lone ones with U+FFFD."""
    if _SURROGATES.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


@dataclass(frozen=True)
class EncodedTexts:
    """Token ids of many texts, flat: row ``i`` is ``ids[offsets[i]:offsets[i] + lengths[i]]``.

    ``valid[i]`` is False for rows whose value was null or not a string; they have no ids
    (length 0) and get null outputs.
    """

    ids: np.ndarray  # int64, all rows' ids back to back
    offsets: np.ndarray  # int64, start of each row in ``ids``
    lengths: np.ndarray  # int64, number of ids of each row (0 for invalid rows)
    valid: np.ndarray  # bool

    @property
    def num_rows(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())


def clean_texts(values: Sequence[Any], max_chars: int | None) -> tuple[list[str], np.ndarray]:
    """Keep non-blank strings (cut to ``max_chars``), mark everything else invalid.

    Returns the texts of the valid rows, in order, and the validity mask of all rows.
    Nulls, numbers, bytes and other non-string values are invalid, and so are empty or
    whitespace-only strings (there is nothing to classify): the row is kept and its
    outputs are null, rather than a crash or a label for the text "None" or "".
    Lone UTF-16 surrogates (``"\\ud800"``) are classified as U+FFFD (the input column
    is not changed).
    """
    if max_chars is not None:
        values = [value[:max_chars] if isinstance(value, str) else value for value in values]
    valid = np.fromiter(
        (isinstance(value, str) and value != "" and not value.isspace() for value in values),
        dtype=bool,
        count=len(values),
    )
    texts = [_fix_surrogates(value) for value, ok in zip(values, valid) if ok]
    return texts, valid


def encode(
    tokenizer: Any,
    texts: list[str],
    valid: np.ndarray,
    max_length: int,
    *,
    max_chars: int | None = None,
    drop_tokenless: bool = False,
) -> EncodedTexts:
    """Tokenize the valid texts (truncating to ``max_length`` tokens) into ragged ids.

    At most ``max_chars`` characters of each text reach the tokenizer (default:
    :func:`default_max_chars`). ``drop_tokenless=True`` marks invalid the rows with no
    tokens: text made only of zero-width, combining or control characters (see
    :func:`has_content`), or whose ids are those of ``""``. They get null outputs like
    empty text; the returned ``valid`` is then a new array.
    """
    n_rows = valid.shape[0]
    lengths = np.zeros(n_rows, dtype=np.int64)
    cap = max_chars or default_max_chars(max_length)
    texts = [text[:cap] for text in texts]
    if texts:
        batch = tokenizer(
            texts,
            truncation=True,
            max_length=max_length,
            padding=False,
            add_special_tokens=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        if drop_tokenless:
            keep, valid = _tokenless_rows(tokenizer, texts, batch, valid)
            batch = [ids for ids, ok in zip(batch, keep) if ok]
        valid_lengths = np.fromiter((len(row) for row in batch), dtype=np.int64, count=len(batch))
        lengths[valid] = valid_lengths
        ids = np.fromiter((token for row in batch for token in row), dtype=np.int64, count=int(valid_lengths.sum()))
    else:
        ids = np.zeros(0, dtype=np.int64)
    offsets = np.zeros(n_rows, dtype=np.int64)
    if n_rows:
        offsets[1:] = np.cumsum(lengths)[:-1]
    return EncodedTexts(ids=ids, offsets=offsets, lengths=lengths, valid=valid)


# ---------------------------------------------------------------------------- long documents


@dataclass(frozen=True)
class WindowedTexts:
    """Texts cut into overlapping windows of at most ``max_length`` tokens.

    ``windows`` holds one entry per window (all valid), each with the tokenizer's special
    tokens; ``owner[w]`` is the row window ``w`` came from (ascending: a row's windows are
    contiguous and in text order). Invalid rows have no window. A text that fits the
    window has exactly one, with the same ids as :func:`encode` gives it.
    """

    windows: EncodedTexts
    owner: np.ndarray  # int64, one entry per window
    valid: np.ndarray  # bool, one entry per row

    @property
    def num_rows(self) -> int:
        return int(self.valid.shape[0])

    def windows_per_row(self) -> np.ndarray:
        """How many windows each row got (0 for invalid rows)."""
        return np.bincount(self.owner, minlength=self.num_rows)


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a single text (``[CLS]`` / ``[SEP]`` for BERT).

    Read from the tokenizer itself, by encoding a probe with and without special tokens,
    so any tokenizer's convention (``<s> ... </s>``, suffix-only, none) is kept.
    """
    probe = "hello world"
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    bare = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    raise InputError(
        f"Cannot tell the special tokens of {type(tokenizer).__name__}: its ids for {probe!r} with "
        f"special tokens ({full}) do not contain those without ({bare}); use long_documents='truncate'."
    )


def window_starts(num_tokens: int, window: int, overlap: int) -> list[int]:
    """Start offsets of windows of ``window`` tokens, each overlapping the previous by ``overlap``.

    The fewest windows that cover every token: ``1 + ceil(max(n - window, 0) / (window - overlap))``.
    The last window may be shorter than ``window``.
    """
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, window), got overlap={overlap}, window={window}")
    stride = window - overlap
    count = 1 + -(-max(num_tokens - window, 0) // stride)
    return [index * stride for index in range(count)]


def encode_windows(
    tokenizer: Any,
    texts: list[str],
    valid: np.ndarray,
    max_length: int,
    overlap: int,
    *,
    max_chars: int | None = None,
    drop_tokenless: bool = False,
) -> WindowedTexts:
    """Tokenize the valid texts without truncation and cut long ones into overlapping windows.

    Each window holds at most ``max_length`` ids: the tokenizer's special tokens around up to
    ``max_length - specials`` text tokens, consecutive windows sharing ``overlap`` text
    tokens. Texts that fit keep their ids exactly as :func:`encode` makes them.
    At most ``max_chars`` characters of a text are read (default:
    :func:`default_max_chars` with ``windowed=True``), texts over :data:`PIECE_CHARS`
    characters are tokenized piece by piece, and ``drop_tokenless`` is as in :func:`encode`.
    Raises :class:`InputError` if ``overlap`` leaves no room to advance.
    """
    prefix, suffix = special_tokens(tokenizer)
    room = max_length - len(prefix) - len(suffix)
    if not 0 <= overlap < room:
        raise InputError(
            f"chunk_overlap={overlap} must be smaller than the text tokens of one window: max length "
            f"{max_length} minus {len(prefix) + len(suffix)} special tokens = {room}."
        )
    cap = max_chars or default_max_chars(max_length, windowed=True)
    texts = [text[:cap] for text in texts]
    full = _tokenize_in_pieces(tokenizer, texts, prefix, suffix) if texts else []
    if drop_tokenless:
        keep, valid = _tokenless_rows(tokenizer, texts, full, valid)
        texts = [text for text, ok in zip(texts, keep) if ok]
        full = [ids for ids, ok in zip(full, keep) if ok]
    rows = np.flatnonzero(valid)
    pieces: list[list[int]] = []
    owner: list[int] = []
    long_positions = [i for i, ids in enumerate(full) if len(ids) > max_length]
    bodies = _bodies(tokenizer, texts, full, long_positions, prefix, suffix)
    for position, ids in enumerate(full):
        if len(ids) <= max_length:
            pieces.append(ids)
            owner.append(int(rows[position]))
            continue
        body = bodies[position]
        for start in window_starts(len(body), room, overlap):
            pieces.append(prefix + body[start : start + room] + suffix)
            owner.append(int(rows[position]))
    lengths = np.fromiter((len(ids) for ids in pieces), dtype=np.int64, count=len(pieces))
    ids = np.fromiter((token for piece in pieces for token in piece), dtype=np.int64, count=int(lengths.sum()))
    offsets = np.zeros(len(pieces), dtype=np.int64)
    if len(pieces):
        offsets[1:] = np.cumsum(lengths)[:-1]
    windows = EncodedTexts(ids=ids, offsets=offsets, lengths=lengths, valid=np.ones(len(pieces), dtype=bool))
    return WindowedTexts(windows=windows, owner=np.asarray(owner, dtype=np.int64), valid=valid)


def _tokenize(tokenizer: Any, texts: list[str], *, add_special_tokens: bool) -> list[list[int]]:
    # verbose=False: no "sequence longer than the maximum" warning; cutting is done here.
    return tokenizer(
        texts,
        truncation=False,
        padding=False,
        add_special_tokens=add_special_tokens,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )["input_ids"]


def _bodies(
    tokenizer: Any,
    texts: list[str],
    full: list[list[int]],
    positions: list[int],
    prefix: list[int],
    suffix: list[int],
) -> dict[int, list[int]]:
    """The text ids (special tokens removed) of the long texts at ``positions``.

    Stripped from the ids already made when they start with ``prefix`` and end with
    ``suffix`` (the usual case), else tokenized again without special tokens.
    """
    bodies: dict[int, list[int]] = {}
    again = []
    for position in positions:
        ids = list(full[position])
        end = len(ids) - len(suffix)
        if ids[: len(prefix)] == prefix and ids[end:] == suffix:
            bodies[position] = ids[len(prefix) : end]
        else:
            again.append(position)
    if again:
        retokenized = _tokenize(tokenizer, [texts[i] for i in again], add_special_tokens=False)
        bodies.update({position: list(ids) for position, ids in zip(again, retokenized)})
    return bodies


def text_pieces(text: str, size: int | None = None) -> list[str]:
    """``text`` cut into pieces of at most ``size`` (default :data:`PIECE_CHARS`) characters,
    at whitespace where there is some.

    A piece ends before a run of whitespace found in its second half, and the next piece
    starts after that run; for WordPiece and SentencePiece tokenizers that gives the same
    tokens as the whole text. A piece without whitespace in its second half is cut at
    ``size`` characters (a token may then be split in two).
    """
    size = size or PIECE_CHARS
    pieces = []
    start = 0
    while len(text) - start > size:
        end = start + size
        cut = max(text.rfind(" ", start + size // 2, end), text.rfind("\n", start + size // 2, end))
        if cut <= start:
            pieces.append(text[start:end])
            start = end
            continue
        pieces.append(text[start:cut])
        start = cut
        while start < len(text) and text[start].isspace():
            start += 1
    pieces.append(text[start:])
    return [piece for piece in pieces if piece]


def _tokenize_in_pieces(tokenizer: Any, texts: list[str], prefix: list[int], suffix: list[int]) -> list[list[int]]:
    """Ids with special tokens of every text; texts over :data:`PIECE_CHARS` go in pieces."""
    short = [i for i, text in enumerate(texts) if len(text) <= PIECE_CHARS]
    full: list[list[int]] = [[] for _ in texts]
    if short:
        for i, ids in zip(short, _tokenize(tokenizer, [texts[i] for i in short], add_special_tokens=True)):
            full[i] = ids
    for i, text in enumerate(texts):
        if len(text) > PIECE_CHARS:
            body: list[int] = []
            for piece in text_pieces(text):
                body.extend(_tokenize(tokenizer, [piece], add_special_tokens=False)[0])
            full[i] = prefix + body + suffix
    return full


#: Unicode categories that carry no text on their own: controls (NUL...), format characters
#: (zero-width space and joiners, BOM), combining marks without a base, and separators.
_CONTENTLESS_CATEGORIES = frozenset({"Cc", "Cf", "Mn", "Me", "Zs", "Zl", "Zp"})


def has_content(text: str) -> bool:
    """False for text made only of control, format (zero-width), combining or space characters.

    Stops at the first other character, so ordinary text costs one lookup.
    """
    return any(unicodedata.category(char) not in _CONTENTLESS_CATEGORIES for char in text)


def _tokenless_rows(
    tokenizer: Any, texts: list[str], batch: list[list[int]], valid: np.ndarray
) -> tuple[list[bool], np.ndarray]:
    """Which valid rows have tokens, and ``valid`` without the others.

    A row has none when its text has no content (:func:`has_content`) or its ids (with
    special tokens, ``batch``) are those of ``""``. ``texts`` and ``batch`` hold the valid rows.
    """
    empty = list(tokenizer([""], add_special_tokens=True, return_attention_mask=False, return_token_type_ids=False)["input_ids"][0])
    keep = [list(ids) != empty and has_content(text) for text, ids in zip(texts, batch)]
    if not all(keep):
        valid = valid.copy()
        valid[np.flatnonzero(valid)[~np.asarray(keep, dtype=bool)]] = False
    return keep, valid
