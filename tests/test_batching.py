"""Token-budget batch planning, per-batch padding and the OOM-halving forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_cls_dask.batching import (
    DEFAULT_CPU_BATCH_TOKENS,
    DEFAULT_MIN_FILL,
    DEFAULT_MIN_PADDING_EFFICIENCY,
    INFERENCE_MIN_FILL,
    forward_with_oom_split,
    pad_batch,
    plan_batches,
)
from nemo_cls_dask.tokenization import EncodedTexts, clean_texts, encode

DETERMINISTIC = settings(derandomize=True, max_examples=150, deadline=None, database=None)


def encoded_from(rows: list[list[int] | None]) -> EncodedTexts:
    """Ragged ids from Python lists (``None``: an invalid row with no ids)."""
    valid = np.array([row is not None for row in rows], dtype=bool)
    lengths = np.array([len(row) if row is not None else 0 for row in rows], dtype=np.int64)
    ids = np.array([token for row in rows if row is not None for token in row], dtype=np.int64)
    offsets = np.zeros(len(rows), dtype=np.int64)
    if len(rows):
        offsets[1:] = np.cumsum(lengths)[:-1]
    return EncodedTexts(ids=ids, offsets=offsets, lengths=lengths, valid=valid)


def padded_cost(lengths: np.ndarray, batches: list[np.ndarray]) -> int:
    return sum(len(batch) * max(int(lengths[batch].max()), 1) for batch in batches)


# --------------------------------------------------------------------------- plan_batches

lengths_strategy = st.lists(st.integers(min_value=1, max_value=700), min_size=0, max_size=120)


@DETERMINISTIC
@given(
    lengths=lengths_strategy,
    batch_tokens=st.integers(min_value=1, max_value=4096),
    max_batch_rows=st.integers(min_value=1, max_value=64),
    sort_by_length=st.booleans(),
)
def test_plan_batches_invariants(lengths, batch_tokens, max_batch_rows, sort_by_length):
    lengths = np.array(lengths, dtype=np.int64)
    rows = np.arange(len(lengths))
    batches = plan_batches(
        lengths, rows, batch_tokens=batch_tokens, max_batch_rows=max_batch_rows, sort_by_length=sort_by_length
    )
    flat = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    # Every row exactly once.
    assert sorted(flat.tolist()) == rows.tolist()
    # Order: shortest first (stable) when sorting, the given order otherwise.
    if sort_by_length:
        assert flat.tolist() == np.argsort(lengths, kind="stable").tolist()
    else:
        assert flat.tolist() == rows.tolist()
    for batch in batches:
        assert len(batch) >= 1
        assert len(batch) <= max_batch_rows
        cost = len(batch) * int(lengths[batch].max())
        # Within budget, except a single row that alone is over it.
        assert cost <= batch_tokens or (len(batch) == 1 and lengths[batch[0]] > batch_tokens)


@DETERMINISTIC
@given(lengths=st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=80),
       batch_tokens=st.integers(min_value=300, max_value=3000))
def test_plan_batches_is_greedy_without_padding_rule(lengths, batch_tokens):
    """With the padding rule off, no batch could have taken the next row within the budget."""
    lengths = np.array(lengths, dtype=np.int64)
    batches = plan_batches(
        lengths, np.arange(len(lengths)), batch_tokens=batch_tokens, max_batch_rows=10_000, min_padding_efficiency=0.0
    )
    for batch, following in zip(batches, batches[1:]):
        grown = np.concatenate([batch, following[:1]])
        assert len(grown) * int(lengths[grown].max()) > batch_tokens


def _closing_is_justified(lengths, prefix, row, batch_tokens, max_batch_rows, efficiency, min_fill):
    """Would ``plan_batches`` close a batch holding ``prefix`` rather than add ``row``?"""
    grown = np.append(prefix, row)
    cost = len(grown) * int(lengths[grown].max())
    if cost > batch_tokens or len(grown) > max_batch_rows:
        return True
    full_enough = len(prefix) * int(lengths[prefix].max()) >= min_fill * batch_tokens
    return full_enough and int(lengths[grown].sum()) < efficiency * cost


@DETERMINISTIC
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=80),
    batch_tokens=st.integers(min_value=64, max_value=3000),
    max_batch_rows=st.integers(min_value=1, max_value=40),
    sort_by_length=st.booleans(),
)
def test_plan_batches_closes_batches_only_when_needed(lengths, batch_tokens, max_batch_rows, sort_by_length):
    """A batch ends exactly where the budget, the row cap or the padding rule says so."""
    efficiency, min_fill = DEFAULT_MIN_PADDING_EFFICIENCY, DEFAULT_MIN_FILL
    lengths = np.array(lengths, dtype=np.int64)
    batches = plan_batches(
        lengths, np.arange(len(lengths)), batch_tokens=batch_tokens, max_batch_rows=max_batch_rows,
        sort_by_length=sort_by_length,
    )
    args = (batch_tokens, max_batch_rows, efficiency, min_fill)
    for batch, following in zip(batches, batches[1:]):
        assert _closing_is_justified(lengths, batch, following[0], *args)
    for batch in batches:
        for size in range(1, len(batch)):
            assert not _closing_is_justified(lengths, batch[:size], batch[size], *args)


def test_plan_batches_subset_of_rows_and_examples():
    lengths = np.array([5, 0, 3, 9, 0, 1, 9, 2])
    valid_rows = np.array([0, 2, 3, 5, 6, 7])  # rows 1 and 4 are invalid (no tokens)
    plain = {"min_padding_efficiency": 0.0}
    batches = plan_batches(lengths, valid_rows, batch_tokens=10, max_batch_rows=3, **plain)
    assert [b.tolist() for b in batches] == [[5, 7, 2], [0], [3], [6]]
    # Without sorting the given order is kept.
    batches = plan_batches(lengths, valid_rows, batch_tokens=10, max_batch_rows=3, sort_by_length=False, **plain)
    assert [b.tolist() for b in batches] == [[0, 2], [3], [5], [6], [7]]


def test_plan_batches_closes_before_a_length_jump():
    # Ten short rows then ten long ones: one batch would be mostly padding.
    lengths = np.array([10] * 10 + [100] * 10)
    rows = np.arange(20)
    assert len(plan_batches(lengths, rows, batch_tokens=10_000, min_padding_efficiency=0.0)) == 1
    batches = plan_batches(lengths, rows, batch_tokens=10_000, min_padding_efficiency=0.9, min_fill=0.0)
    assert [b.tolist() for b in batches] == [list(range(10)), list(range(10, 20))]


def test_plan_batches_max_rows_and_overlong_rows():
    lengths = np.full(10, 4)
    batches = plan_batches(lengths, np.arange(10), batch_tokens=1_000, max_batch_rows=3)
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    lengths = np.array([50, 2, 60])
    batches = plan_batches(lengths, np.arange(3), batch_tokens=10)
    assert [b.tolist() for b in batches] == [[1], [0], [2]]


def test_plan_batches_empty_and_bad_arguments():
    assert plan_batches(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), batch_tokens=8) == []
    with pytest.raises(ValueError):
        plan_batches(np.ones(3), np.arange(3), batch_tokens=0)
    with pytest.raises(ValueError):
        plan_batches(np.ones(3), np.arange(3), batch_tokens=8, max_batch_rows=0)


def test_sorted_plans_pad_less_than_unsorted(varied_texts, hf_checkpoint):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_checkpoint)
    texts, valid = clean_texts(varied_texts, None)
    encoded = encode(tokenizer, texts, valid, 512)
    rows = np.flatnonzero(encoded.valid)
    real = int(encoded.lengths.sum())
    for budget in (256, 1024, 4096):
        sorted_cost = padded_cost(encoded.lengths, plan_batches(encoded.lengths, rows, batch_tokens=budget))
        unsorted_cost = padded_cost(
            encoded.lengths, plan_batches(encoded.lengths, rows, batch_tokens=budget, sort_by_length=False)
        )
        assert real <= sorted_cost < unsorted_cost
    # With a budget of a few long rows, sorted batches are nearly free of padding.
    sorted_cost = padded_cost(encoded.lengths, plan_batches(encoded.lengths, rows, batch_tokens=256))
    assert real / sorted_cost > 0.9


# --------------------------------------------------------------------------- pad_batch


def test_pad_batch_right_pads_to_batch_longest_only():
    encoded = encoded_from([[11, 12, 13], [21], None, [41, 42, 43, 44, 45, 46, 47], [51, 52]])
    ids, mask = pad_batch(encoded, np.array([1, 0, 4]), pad_id=0, padding_side="right")
    assert ids.dtype == torch.int64 and mask.dtype == torch.int64
    assert ids.tolist() == [[21, 0, 0], [11, 12, 13], [51, 52, 0]]
    assert mask.tolist() == [[1, 0, 0], [1, 1, 1], [1, 1, 0]]
    # The long row 3 does not widen a batch it is not in.
    assert ids.shape == (3, 3)


def test_pad_batch_left():
    encoded = encoded_from([[11, 12, 13], [21], None, [41, 42, 43, 44, 45, 46, 47], [51, 52]])
    ids, mask = pad_batch(encoded, np.array([1, 0, 4]), pad_id=-7, padding_side="left")
    assert ids.tolist() == [[-7, -7, 21], [11, 12, 13], [-7, 51, 52]]
    assert mask.tolist() == [[0, 0, 1], [1, 1, 1], [0, 1, 1]]
    ids, mask = pad_batch(encoded, np.array([3, 1]), pad_id=9, padding_side="left")
    assert ids.tolist() == [[41, 42, 43, 44, 45, 46, 47], [9, 9, 9, 9, 9, 9, 21]]
    assert mask.sum(dim=1).tolist() == [7, 1]


@DETERMINISTIC
@given(
    rows=st.lists(st.lists(st.integers(min_value=1, max_value=1000), min_size=1, max_size=20), min_size=1, max_size=12),
    side=st.sampled_from(["right", "left"]),
    data=st.data(),
)
def test_pad_batch_round_trip(rows, side, data):
    encoded = encoded_from(rows)
    picked = data.draw(st.lists(st.integers(0, len(rows) - 1), min_size=1, max_size=len(rows), unique=True))
    ids, mask = pad_batch(encoded, np.array(picked), pad_id=0, padding_side=side)
    assert ids.shape == mask.shape == (len(picked), max(len(rows[i]) for i in picked))
    for line, m, i in zip(ids.tolist(), mask.tolist(), picked):
        real = [token for token, flag in zip(line, m) if flag]
        assert real == rows[i]
        assert all(token == 0 for token, flag in zip(line, m) if not flag)
        ones = [j for j, flag in enumerate(m) if flag]
        # Real tokens are contiguous, at the start (right padding) or the end (left).
        assert ones == (list(range(len(ones))) if side == "right" else list(range(len(m) - len(ones), len(m))))


# --------------------------------------------------------------------------- OOM split


class FakeOOMForward:
    """A deterministic per-row forward that runs out of memory above ``max_rows`` rows."""

    def __init__(self, max_rows: int, weights: torch.Tensor | None = None) -> None:
        self.max_rows = max_rows
        self.calls: list[tuple[int, int]] = []
        self.weights = weights

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(input_ids.shape))
        if input_ids.shape[0] > self.max_rows:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (fake)")
        mask = attention_mask.to(torch.float64)
        ids = input_ids.to(torch.float64)
        # Outputs of a row depend on its real tokens only (not on the padded width).
        return torch.stack([(ids * mask).sum(1), mask.sum(1), (ids * ids * mask).sum(1)], dim=1)


def _sorted_batch(lengths, side="right"):
    rng = np.random.default_rng(0)
    rows = [rng.integers(1, 500, size=n).tolist() for n in lengths]
    encoded = encoded_from(rows)
    return pad_batch(encoded, np.arange(len(rows)), pad_id=0, padding_side=side)


@pytest.mark.parametrize("max_rows", [1, 2, 3, 5])
@pytest.mark.parametrize("side", ["right", "left"])
def test_oom_split_gives_same_outputs(max_rows, side):
    ids, mask = _sorted_batch([1, 2, 2, 3, 5, 8, 8, 9, 13, 21, 30], side)
    expected = FakeOOMForward(max_rows=10**6)(ids, mask)
    forward = FakeOOMForward(max_rows=max_rows)
    splits = []
    result = forward_with_oom_split(forward, ids, mask, splits.append)
    assert torch.equal(result, expected)
    assert splits and all(rows > max_rows for rows in splits)
    assert max(rows for rows, _ in forward.calls[1:]) <= ids.shape[0] // 2 + 1
    # Halves of a sorted batch are re-trimmed to their own longest row.
    assert min(width for _, width in forward.calls) < ids.shape[1]


def test_oom_split_with_real_model_matches_unsplit(hf_checkpoint):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(hf_checkpoint).eval()

    def forward(input_ids, attention_mask):
        return model(input_ids=input_ids, attention_mask=attention_mask).logits

    ids, mask = _sorted_batch([3, 4, 4, 7, 10, 12, 15, 20])
    ids = ids.clamp(max=model.config.vocab_size - 1)
    with torch.inference_mode():
        expected = forward(ids, mask)
        fake = FakeOOMForward(max_rows=3)

        def flaky(input_ids, attention_mask):
            fake(input_ids, attention_mask)  # raises above 3 rows
            return forward(input_ids, attention_mask)

        result = forward_with_oom_split(flaky, ids, mask)
    torch.testing.assert_close(result, expected, rtol=0, atol=1e-5)


def test_oom_on_single_row_reraises():
    ids, mask = _sorted_batch([4, 6, 9])
    with pytest.raises(torch.OutOfMemoryError, match="single row of 9 tokens"):
        forward_with_oom_split(FakeOOMForward(max_rows=0), ids[2:], mask[2:])
    with pytest.raises(torch.OutOfMemoryError, match="single row"):
        forward_with_oom_split(FakeOOMForward(max_rows=0), ids, mask)


def test_oom_split_accepts_runtime_error_message_and_reraises_others():
    ids, mask = _sorted_batch([2, 3, 4, 5])
    calls = []

    def old_style(input_ids, attention_mask):
        calls.append(input_ids.shape[0])
        if input_ids.shape[0] > 1:
            raise RuntimeError("CUDA error: out of memory")
        return input_ids[:, :1].float()

    assert forward_with_oom_split(old_style, ids, mask).shape == (4, 1)

    def broken(input_ids, attention_mask):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        forward_with_oom_split(broken, ids, mask)


# --------------------------------------------------------------------------- tokenization


def test_clean_texts_marks_invalid_rows():
    values = ["abc", None, 3, "", "   ", float("nan"), b"bytes", "hello world"]
    texts, valid = clean_texts(values, None)
    assert valid.tolist() == [True, False, False, False, False, False, False, True]
    assert texts == ["abc", "hello world"]
    texts, valid = clean_texts(values, 4)
    assert texts == ["abc", "hell"]


def test_encode_is_ragged_and_unpadded(hf_checkpoint):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_checkpoint)
    texts, valid = clean_texts(["a b c d e f", None, "hello", "word " * 100], None)
    encoded = encode(tokenizer, texts, valid, max_length=16)
    assert encoded.valid.tolist() == [True, False, True, True]
    assert encoded.lengths[1] == 0
    assert encoded.lengths[3] == 16  # truncated to max_length
    assert encoded.ids.shape[0] == encoded.num_tokens == encoded.lengths.sum()
    for i, text in [(0, texts[0]), (2, texts[1])]:
        expected = tokenizer(text)["input_ids"]
        start = encoded.offsets[i]
        assert encoded.ids[start : start + encoded.lengths[i]].tolist() == expected


def test_inference_planning_pads_little_on_small_partitions_of_real_text():
    """Partitions of 125 Debian descriptions, planned as the engine does: at least 0.97 of the
    computed tokens are real (the training default of closing later pads more)."""
    import pandas as pd

    from nemo_cls_dask import engine
    from nemo_cls_dask.io import SAMPLE_PATH
    from nemo_cls_dask.models.loading import describe_model, get_tokenizer

    tokenizer = get_tokenizer(describe_model("debian-topics").tokenizer_path)
    texts = pd.read_parquet(SAMPLE_PATH)["text"].head(1000).tolist()

    def efficiency(min_fill: float) -> float:
        real = computed = 0
        for start in range(0, len(texts), 125):
            cleaned, valid = clean_texts(texts[start : start + 125], None)
            lengths = encode(tokenizer, cleaned, valid, 256).lengths
            for batch in plan_batches(lengths, np.arange(len(lengths)), batch_tokens=DEFAULT_CPU_BATCH_TOKENS, min_fill=min_fill):
                real += int(lengths[batch].sum())
                computed += len(batch) * int(lengths[batch].max())
        return real / computed

    assert engine.INFERENCE_MIN_FILL == INFERENCE_MIN_FILL < DEFAULT_MIN_FILL
    assert efficiency(INFERENCE_MIN_FILL) >= 0.97
    assert efficiency(DEFAULT_MIN_FILL) < efficiency(INFERENCE_MIN_FILL)


# --------------------------------------------------------------------------- attention cap (CPU)


def test_attention_cells_cap_rows_times_squared_length():
    """Long rows get small batches under the cap while the token budget alone allows many."""
    lengths = np.full(12, 300, dtype=np.int64)
    rows = np.arange(12)
    by_tokens = plan_batches(lengths, rows, batch_tokens=8192, min_padding_efficiency=0.0)
    capped = plan_batches(lengths, rows, batch_tokens=8192, min_padding_efficiency=0.0, attention_cells=512 * 512)
    assert [len(batch) for batch in by_tokens] == [12]
    assert [len(batch) for batch in capped] == [2] * 6  # 2 x 300**2 fits 512**2, 3 x 300**2 does not
    assert sorted(np.concatenate(capped).tolist()) == rows.tolist()
    short = np.full(40, 20, dtype=np.int64)  # short rows: the token budget binds first, as before
    assert [len(b) for b in plan_batches(short, np.arange(40), batch_tokens=200, attention_cells=512 * 512)] == [10] * 4


def test_engine_caps_attention_on_cpu_only_when_batch_tokens_is_unset(head_checkpoint):
    """An attention model on CPU gets the cap by default; a budget the user sets is kept as given;
    the light layouts (linear in the length) never get it. Outputs agree either way (fp32; other
    batch shapes change round-off only, hence the tolerance)."""
    from nemo_cls_dask.batching import DEFAULT_CPU_ATTENTION_CELLS
    from nemo_cls_dask.engine import BatchSettings, default_attention_cells, engine_stats, infer, reset_engine_stats
    from nemo_cls_dask.lightweight.checkpoint import LAYOUT as KIMCNN
    from nemo_cls_dask.lightweight.tfidf_checkpoint import LAYOUT as TFIDF
    from nemo_cls_dask.models.layouts import layout_named
    from nemo_cls_dask.models.loading import get_model

    loaded = get_model(str(head_checkpoint))
    assert default_attention_cells(loaded, BatchSettings()) == DEFAULT_CPU_ATTENTION_CELLS
    assert default_attention_cells(loaded, BatchSettings(batch_tokens=8192)) is None
    assert layout_named(KIMCNN).attention is False and layout_named(TFIDF).attention is False

    texts = [" ".join(["word"] * 250)] * 20
    encoded = encode(loaded.tokenizer, texts, np.ones(len(texts), dtype=bool), 256)
    width = int(encoded.lengths.max())
    assert width > 200  # long enough that the cap binds before the token budget
    reset_engine_stats()
    capped = infer(loaded, encoded, BatchSettings(autocast=False)).outputs
    capped_batches = engine_stats()["batches"]
    reset_engine_stats()
    free = infer(loaded, encoded, BatchSettings(autocast=False, batch_tokens=8192)).outputs
    assert engine_stats()["batches"] == 1
    assert capped_batches == -(-len(texts) // max(1, DEFAULT_CPU_ATTENTION_CELLS // width**2))
    assert capped_batches > 1
    torch.testing.assert_close(capped, free, rtol=1e-5, atol=1e-5)
