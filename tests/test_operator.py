"""``DistributedDataClassifier`` as a DataFrame operator: numbers, rows, meta and errors.

The numbers are checked against a plain reference written here, independent of the
package: the checkpoint is loaded by hand (NVIDIA head layout: ``AutoModel`` backbone
from ``base_model``, ``model.``-stripped weights, ``[CLS]`` state -> ``fc``; HF layout:
``AutoModelForSequenceClassification``) and run one row at a time, unsorted, unpadded,
in fp32.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from nemo_cls_dask import (
    DistributedDataClassifier,
    InputError,
    ModelLoadError,
    ModelNotFoundError,
    classify,
    engine_stats,
    load_counts,
    reset_engine_stats,
)
from nemo_cls_dask import engine as engine_module
from nemo_cls_dask.engine import CPU_BF16_ENV, autocast_dtype
from nemo_cls_dask.models.loading import get_model

from conftest import HEAD_LABELS, HF_LABELS, MULTI_LABELS
from tolerances import assert_labels_agree, score_rows

ATOL = 1e-5

# --------------------------------------------------------------------------- reference

_REFERENCE_CACHE: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}


def reference_outputs(checkpoint: Path, texts: list[str]) -> np.ndarray:
    """Raw model outputs ``(len(texts), num_outputs)``: one row at a time, fp32, no padding."""
    key = (str(checkpoint), tuple(texts))
    if key in _REFERENCE_CACHE:
        return _REFERENCE_CACHE[key]
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    config = json.loads((checkpoint / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    if "model_type" in config:  # transformers save_pretrained layout
        model = AutoModelForSequenceClassification.from_pretrained(checkpoint, dtype=torch.float32).eval()
        max_len = min(tokenizer.model_max_length, config["max_position_embeddings"])

        def forward(ids, mask):
            return model(input_ids=ids, attention_mask=mask).logits

    else:  # NVIDIA NeMo Curator layout
        backbone = AutoModel.from_config(AutoConfig.from_pretrained(config["base_model"]))
        state = load_file(str(checkpoint / "model.safetensors"))
        stripped = {name[len("model."):]: value for name, value in state.items() if name.startswith("model.")}
        backbone.load_state_dict(stripped, strict=True)
        backbone = backbone.float().eval()
        fc = torch.nn.Linear(state["fc.weight"].shape[1], state["fc.weight"].shape[0])
        fc.load_state_dict({"weight": state["fc.weight"], "bias": state["fc.bias"]})
        max_len = config["max_len"]

        def forward(ids, mask):
            return fc(backbone(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0])

    rows = []
    with torch.inference_mode():
        for text in texts:
            encoded = tokenizer(text, truncation=True, max_length=max_len, return_tensors="pt")
            rows.append(forward(encoded["input_ids"], encoded["attention_mask"])[0].float().numpy())
    _REFERENCE_CACHE[key] = out = np.stack(rows)
    return out


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def pylist(series: pd.Series) -> list:
    """Values of an Arrow list column as Python lists (None for null)."""
    return pa.array(series).to_pylist()


def score_matrix(series: pd.Series) -> np.ndarray:
    return np.array(pylist(series), dtype=np.float64)


def text_frame(texts: list[str], index=None) -> pd.DataFrame:
    n = len(texts)
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64) * 3,
            "text": texts,
            "weight": np.linspace(0.0, 1.0, n, dtype=np.float32),
            "flag": np.arange(n) % 2 == 0,
            "when": pd.date_range("2024-01-01", periods=n, freq="h"),
            "kind": pd.Categorical(["x", "y", "z"] * (n // 3) + ["x", "y", "z"][: n % 3]),
            "maybe": pd.array([i if i % 4 else None for i in range(n)], dtype="Int64"),
        },
        index=index,
    )


@pytest.fixture(scope="module")
def checkpoints(head_checkpoint, hf_checkpoint, regression_checkpoint, multilabel_checkpoint):
    return {
        "head": head_checkpoint,
        "hf": hf_checkpoint,
        "regression": regression_checkpoint,
        "multi": multilabel_checkpoint,
    }


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("layout", ["head", "hf"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"sort_by_length": False},
        {"padding_side": "left"},
        {"max_batch_rows": 3, "batch_tokens": 2048},
    ],
    ids=["sorted", "unsorted", "left", "max-rows"],
)
def test_probabilities_match_reference(layout, options, checkpoints, varied_texts):
    checkpoint = checkpoints[layout]
    labels = HEAD_LABELS if layout == "head" else HF_LABELS
    expected = softmax(reference_outputs(checkpoint, varied_texts))
    settings = {"batch_tokens": 256, **options}
    classifier = DistributedDataClassifier(
        model_identifier=checkpoint, label_field="label", score_field="prob", autocast=False, **settings
    )
    reset_engine_stats()
    out = classifier(text_frame(varied_texts))
    stats = engine_stats()
    assert stats["batches"] >= 8, "the token budget should give many batches"
    assert stats["rows"] == len(varied_texts)
    got = score_matrix(out["prob"])
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
    assert out["label"].tolist() == [labels[i] for i in expected.argmax(axis=1)]
    assert len(set(out["label"])) >= 2, "fabricated heads should give varied labels"


def test_multilabel_outputs_match_reference(checkpoints, varied_texts):
    probabilities = sigmoid(reference_outputs(checkpoints["multi"], varied_texts))
    classifier = DistributedDataClassifier(
        model_identifier=checkpoints["multi"], label_field="topics", score_field="topic_prob", batch_tokens=300,
        autocast=False,
    )
    out = classifier(text_frame(varied_texts))
    assert out["topics"].dtype == pd.ArrowDtype(pa.list_(pa.string()))
    np.testing.assert_allclose(score_matrix(out["topic_prob"]), probabilities, rtol=0, atol=ATOL)
    expected = [[MULTI_LABELS[j] for j in np.flatnonzero(row >= 0.5)] for row in probabilities]
    assert pylist(out["topics"]) == expected
    assert any(len(row) > 1 for row in expected) and any(len(row) == 0 for row in expected)


def test_regression_writes_float32(checkpoints, varied_texts):
    expected = reference_outputs(checkpoints["regression"], varied_texts)[:, 0]
    out = DistributedDataClassifier(model_identifier=checkpoints["regression"], label_field="edu", batch_tokens=300, autocast=False)(
        text_frame(varied_texts)
    )
    assert out["edu"].dtype == np.float32
    np.testing.assert_allclose(out["edu"].to_numpy(), expected, rtol=0, atol=ATOL)


def test_bf16_autocast_is_close(checkpoints, varied_texts):
    expected = softmax(reference_outputs(checkpoints["hf"], varied_texts))
    out = DistributedDataClassifier(
        model_identifier=checkpoints["hf"], label_field="l", score_field="p", autocast="bf16", batch_tokens=1024
    )(text_frame(varied_texts))
    assert out["p"].dtype == pd.ArrowDtype(pa.list_(pa.float32()))
    np.testing.assert_allclose(score_matrix(out["p"]), expected, rtol=0, atol=0.1)


# --------------------------------------------------------------------------- rows, index, columns


INDEXES = {
    "duplicates": lambda n: pd.Index([i // 3 for i in range(n)][::-1], dtype=np.int64),
    "non-monotonic": lambda n: pd.Index(((np.arange(n) * 37) % 101) - 50, dtype=np.int64),
    "strings": lambda n: pd.Index([f"doc-{(i * 7) % n:03d}" for i in range(n)]),
}


@pytest.mark.parametrize("index_kind", list(INDEXES))
@pytest.mark.parametrize("lazy", [False, True], ids=["pandas", "dask"])
def test_order_index_and_columns_preserved(index_kind, lazy, checkpoints, varied_texts):
    n = len(varied_texts)
    frame = text_frame(varied_texts, index=INDEXES[index_kind](n))
    classifier = DistributedDataClassifier(
        model_identifier=checkpoints["head"], label_field="label", score_field="prob", batch_tokens=512
    )
    plain = classifier(text_frame(varied_texts))  # RangeIndex: the positional truth
    if lazy:
        ddf = dd.from_pandas(frame, npartitions=5, sort=False)
        source = ddf.compute()
        out = classifier(ddf).compute()
    else:
        source = frame
        out = classifier(frame)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(frame.columns) + ["label", "prob"]
    assert out.index.equals(frame.index)
    assert out.index.dtype == source.index.dtype
    pd.testing.assert_frame_equal(out[list(frame.columns)], source)
    # Other partitions (or another index's row order) make other batches: equal up to float rounding.
    assert_labels_agree(out["label"], plain["label"], score_rows(plain["prob"]), atol=ATOL)
    np.testing.assert_allclose(score_matrix(out["prob"]), score_matrix(plain["prob"]), rtol=0, atol=ATOL)


def test_input_frame_is_not_modified(checkpoints, varied_texts):
    frame = text_frame(varied_texts)
    before = frame.copy(deep=True)
    out = DistributedDataClassifier(model_identifier=checkpoints["hf"], batch_tokens=512)(frame)
    pd.testing.assert_frame_equal(frame, before)
    assert "preds" in out and "preds" not in frame


def _classifier_variants(checkpoints):
    return {
        "head+score": DistributedDataClassifier(model_identifier=checkpoints["head"], score_field="p"),
        "hf": DistributedDataClassifier(model_identifier=checkpoints["hf"], label_field="sentiment"),
        "multi+score": DistributedDataClassifier(
            model_identifier=checkpoints["multi"], label_field="topics", score_field="tp"
        ),
        "regression": DistributedDataClassifier(model_identifier=checkpoints["regression"], label_field="edu"),
        "filtered": DistributedDataClassifier(
            model_identifier=checkpoints["head"], label_field="q", filter_by=["High", "Low"]
        ),
    }


@pytest.mark.parametrize("variant", ["head+score", "hf", "multi+score", "regression", "filtered"])
def test_meta_matches_computed(variant, checkpoints, varied_texts):
    classifier = _classifier_variants(checkpoints)[variant]
    ddf = dd.from_pandas(text_frame(varied_texts, index=INDEXES["strings"](len(varied_texts))), npartitions=4, sort=False)
    out = classifier(ddf)
    computed = out.compute()
    assert list(out._meta.columns) == list(computed.columns)
    assert out._meta.dtypes.to_dict() == computed.dtypes.to_dict()
    assert out._meta.index.dtype == computed.index.dtype
    # Each partition, not just the concatenation, has the meta's dtypes.
    for part in out.partitions:
        assert part.compute().dtypes.to_dict() == out._meta.dtypes.to_dict()


def test_empty_partitions_dask(checkpoints, varied_texts):
    frame = text_frame(varied_texts)
    ddf = dd.from_pandas(frame, npartitions=6, sort=False)
    keep = (frame["id"] % 5 == 0) & (frame["id"] < 60)  # rows of the first partitions only
    filtered = ddf[(ddf["id"] % 5 == 0) & (ddf["id"] < 60)]
    sizes = filtered.map_partitions(len).compute().tolist()
    assert 0 in sizes and sum(sizes) > 0
    classifier = DistributedDataClassifier(model_identifier=checkpoints["hf"], label_field="l", score_field="p")
    out = classifier(filtered)
    computed = out.compute()
    expected = classifier(filtered.compute())
    pd.testing.assert_frame_equal(computed, expected)
    assert computed["id"].tolist() == frame.loc[keep, "id"].tolist()
    assert out._meta.dtypes.to_dict() == computed.dtypes.to_dict()
    # Every partition empty.
    nothing = classifier(ddf[ddf["id"] < 0]).compute()
    assert len(nothing) == 0
    assert nothing.dtypes.to_dict() == out._meta.dtypes.to_dict()


@pytest.mark.parametrize("layout", ["head", "hf", "multi", "regression"])
def test_empty_pandas_frame(layout, checkpoints, varied_texts):
    frame = text_frame(varied_texts).iloc[:0]
    score = None if layout == "regression" else "s"
    classifier = DistributedDataClassifier(model_identifier=checkpoints[layout], label_field="l", score_field=score)
    out = classifier(frame)
    assert isinstance(out, pd.DataFrame) and len(out) == 0
    assert list(out.columns) == list(frame.columns) + ["l"] + ([score] if score else [])
    pd.testing.assert_frame_equal(out[list(frame.columns)], frame)
    # Same output dtypes as the dask meta (and as a non-empty result).
    lazy = classifier(dd.from_pandas(text_frame(varied_texts), npartitions=2))
    full = classifier(text_frame(varied_texts[:3]))
    outputs = ["l"] + ([score] if score else [])
    assert out[outputs].dtypes.to_dict() == lazy._meta[outputs].dtypes.to_dict() == full[outputs].dtypes.to_dict()


def test_null_and_non_string_text_pandas(checkpoints, varied_texts):
    good = varied_texts[:6]
    values = [good[0], None, good[1], np.nan, 7, good[2], "", "   \n", b"bytes", pd.NA, good[3], good[4], good[5]]
    bad_positions = [1, 3, 4, 6, 7, 8, 9]
    frame = pd.DataFrame({"text": pd.Series(values, dtype=object), "n": range(len(values))})
    for layout, score in [("head", "p"), ("hf", "p"), ("multi", "p"), ("regression", None)]:
        classifier = DistributedDataClassifier(model_identifier=checkpoints[layout], label_field="l", score_field=score)
        out = classifier(frame)
        assert len(out) == len(frame) and out["n"].tolist() == list(range(len(values)))
        missing = out["l"].isna().to_numpy()
        assert np.flatnonzero(missing).tolist() == bad_positions, layout
        if score:
            assert np.flatnonzero(out["p"].isna().to_numpy()).tolist() == bad_positions
        # Valid rows get the same outputs as when classified alone.
        alone = classifier(pd.DataFrame({"text": good, "n": 0}))
        valid = out[~missing]
        if layout == "multi":
            assert pylist(valid["l"]) == pylist(alone["l"])
        elif layout == "regression":
            np.testing.assert_allclose(valid["l"].to_numpy(), alone["l"].to_numpy(), atol=ATOL)
        else:  # other rows in the batch: labels equal but for near-ties
            assert_labels_agree(valid["l"], alone["l"], score_rows(alone["p"]), atol=ATOL)
        if score:
            np.testing.assert_allclose(score_matrix(valid["p"]), score_matrix(alone["p"]), atol=ATOL)


def test_all_null_text_partition(checkpoints):
    frame = pd.DataFrame({"text": [None, None, ""]}, index=[9, 9, 4])
    out = DistributedDataClassifier(model_identifier=checkpoints["head"], score_field="p")(frame)
    assert out.index.tolist() == [9, 9, 4]
    assert out["preds"].isna().all() and out["p"].isna().all()


def test_string_dtype_text_with_missing_values(checkpoints, varied_texts):
    texts = pd.Series(varied_texts[:5] + [None], dtype="str")
    out = DistributedDataClassifier(model_identifier=checkpoints["hf"])(pd.DataFrame({"text": texts}))
    assert out["preds"].isna().tolist() == [False] * 5 + [True]


def test_max_chars_cuts_text(checkpoints, varied_texts):
    long_texts = [t for t in varied_texts if len(t) > 200][:4]
    cut = [t[:40] for t in long_texts]
    a = DistributedDataClassifier(model_identifier=checkpoints["hf"], score_field="p", max_chars=40)
    b = DistributedDataClassifier(model_identifier=checkpoints["hf"], score_field="p")
    np.testing.assert_allclose(
        score_matrix(a(pd.DataFrame({"text": long_texts}))["p"]),
        score_matrix(b(pd.DataFrame({"text": cut}))["p"]),
        atol=ATOL,
    )


# --------------------------------------------------------------------------- filter_by


@pytest.mark.parametrize("lazy", [False, True], ids=["pandas", "dask"])
def test_filter_by_keeps_listed_labels_in_order(lazy, checkpoints, varied_texts):
    texts = list(varied_texts) + [None]
    index = [7] * 5 + list(range(len(texts) - 5))[::-1]
    frame = pd.DataFrame({"text": pd.Series(texts, dtype=object, index=index), "n": range(len(texts))}, index=index)
    assert frame["text"].tolist() == texts
    unfiltered = DistributedDataClassifier(model_identifier=checkpoints["head"], label_field="q", score_field="p")(frame)
    counts = unfiltered["q"].value_counts()
    assert len(counts) >= 2
    keep = [counts.index[0]]  # the most common label only: a proper, non-empty subset
    classifier = DistributedDataClassifier(
        model_identifier=checkpoints["head"], label_field="q", score_field="p", filter_by=keep
    )
    if lazy:
        out = classifier(dd.from_pandas(frame, npartitions=4, sort=False)).compute()
    else:
        out = classifier(frame)
    expected = unfiltered[unfiltered["q"].isin(keep)]
    assert 0 < len(out) < len(frame)
    assert out["n"].tolist() == expected["n"].tolist()
    assert out.index.tolist() == expected.index.tolist()
    assert out["q"].tolist() == expected["q"].tolist()
    assert set(out["q"]) == set(keep)


def test_filter_by_multilabel_keeps_rows_with_any_listed_label(checkpoints, varied_texts):
    texts = list(varied_texts) + [None, ""]
    frame = pd.DataFrame({"text": pd.Series(texts, dtype=object)})
    unfiltered = DistributedDataClassifier(model_identifier=checkpoints["multi"], label_field="t")(frame)
    keep = ["recipe", "spam"]
    out = DistributedDataClassifier(model_identifier=checkpoints["multi"], label_field="t", filter_by=keep)(frame)
    mask = [row is not None and bool(set(row) & set(keep)) for row in pylist(unfiltered["t"])]
    assert 0 < sum(mask) < len(frame)
    assert out.index.tolist() == unfiltered.index[mask].tolist()


# --------------------------------------------------------------------------- several classifiers


@pytest.mark.parametrize("lazy", [False, True], ids=["pandas", "dask"])
def test_classify_several_equals_one_after_another(lazy, checkpoints, varied_texts):
    a = DistributedDataClassifier(model_identifier=checkpoints["head"], label_field="quality", score_field="qp")
    b = DistributedDataClassifier(
        model_identifier=checkpoints["hf"], label_field="sentiment", score_field="sp", max_chars=200
    )
    c = DistributedDataClassifier(model_identifier=checkpoints["regression"], label_field="edu")
    frame = text_frame(varied_texts, index=INDEXES["duplicates"](len(varied_texts)))
    source = dd.from_pandas(frame, npartitions=3, sort=False) if lazy else frame
    together = classify(source, [a, b, c])
    apart = c(b(a(source)))
    if lazy:
        assert together._meta.dtypes.to_dict() == apart._meta.dtypes.to_dict()
        together, apart = together.compute(), apart.compute()
    pd.testing.assert_frame_equal(together, apart)
    assert list(together.columns)[-5:] == ["quality", "qp", "sentiment", "sp", "edu"]


def test_classify_rejects_clashing_outputs_and_bad_arguments(checkpoints, varied_texts):
    frame = text_frame(varied_texts)
    a = DistributedDataClassifier(model_identifier=checkpoints["head"], label_field="x")
    b = DistributedDataClassifier(model_identifier=checkpoints["hf"], label_field="x")
    with pytest.raises(InputError, match=r"Several classifiers would write the column\(s\) \['x'\]"):
        classify(frame, [a, b])
    with pytest.raises(InputError, match=r"\['x'\] already exist"):
        classify(frame.assign(x=1), [a])
    with pytest.raises(InputError, match="at least one"):
        classify(frame, [])
    with pytest.raises(InputError, match="DistributedDataClassifier"):
        classify(frame, [a, "not a classifier"])


# --------------------------------------------------------------------------- laziness


def test_dask_apply_is_lazy_and_pandas_apply_is_eager(checkpoints, copy_checkpoint, varied_texts):
    fresh = copy_checkpoint(checkpoints["hf"], "lazy-model")
    classifier = DistributedDataClassifier(model_identifier=fresh, score_field="p")
    ddf = dd.from_pandas(text_frame(varied_texts), npartitions=3, sort=False)
    out = classifier(ddf)
    assert str(fresh) not in load_counts(), "applying to a dask frame must not load weights"
    assert hasattr(out, "dask") and not isinstance(out, pd.DataFrame)
    out.compute()
    out.compute()
    assert load_counts()[str(fresh)] == 1, "loaded once per process, then reused"
    eager = classifier(text_frame(varied_texts))
    assert isinstance(eager, pd.DataFrame)
    assert load_counts()[str(fresh)] == 1


# --------------------------------------------------------------------------- errors at apply time


@pytest.fixture
def frame(varied_texts):
    return text_frame(varied_texts[:8])


@pytest.fixture(params=["pandas", "dask"])
def applied_to(request, frame):
    """Apply a classifier to the pandas frame or to a dask frame (no compute)."""
    source = frame if request.param == "pandas" else dd.from_pandas(frame, npartitions=2, sort=False)
    return lambda classifier: classifier(source)


def test_missing_text_column(applied_to, checkpoints):
    classifier = DistributedDataClassifier(model_identifier=checkpoints["head"], text_field="content")
    with pytest.raises(InputError, match=r"Text column 'content' is not in the DataFrame.*'text'"):
        applied_to(classifier)


def test_output_column_already_present(applied_to, checkpoints):
    for options in ({"label_field": "weight"}, {"score_field": "flag"}):
        classifier = DistributedDataClassifier(model_identifier=checkpoints["head"], **options)
        with pytest.raises(InputError, match=r"already exist.*label_field"):
            applied_to(classifier)


def test_unknown_filter_by_label(applied_to, checkpoints):
    classifier = DistributedDataClassifier(model_identifier=checkpoints["head"], filter_by=["High", "Excellent"])
    with pytest.raises(InputError, match=r"\['Excellent'\].*not labels.*'High', 'Medium', 'Low'"):
        applied_to(classifier)


def test_regression_model_rejects_filter_and_scores(applied_to, checkpoints):
    with pytest.raises(InputError, match="regression"):
        applied_to(DistributedDataClassifier(model_identifier=checkpoints["regression"], filter_by=["LABEL_0"]))
    with pytest.raises(InputError, match="score_field"):
        applied_to(DistributedDataClassifier(model_identifier=checkpoints["regression"], score_field="s"))


@pytest.mark.parametrize("relative", [False, True])
def test_model_folder_missing(applied_to, tmp_path, relative, monkeypatch):
    if relative:
        monkeypatch.chdir(tmp_path)
        missing = "./models/quality"
    else:
        missing = str(tmp_path / "no-such-model")
    classifier = DistributedDataClassifier(model_identifier=missing)  # constructing is fine
    with pytest.raises(ModelNotFoundError, match="does not exist") as error:
        applied_to(classifier)
    assert missing in str(error.value)


def test_hub_id_not_in_cache_offline(applied_to, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = "nvidia/not-a-cached-classifier"
    classifier = DistributedDataClassifier(model_identifier=repo, cache_dir=str(tmp_path / "hf-cache"))
    with pytest.raises(ModelNotFoundError) as error:
        applied_to(classifier)
    message = str(error.value)
    assert repo in message and "HF_HUB_OFFLINE" in message and "cache" in message


@pytest.mark.parametrize("key", ["id2label", "base_model"])
def test_head_config_missing_key(applied_to, checkpoints, copy_checkpoint, key):
    checkpoint = copy_checkpoint(checkpoints["head"], f"no-{key}")
    config_file = checkpoint / "config.json"
    config = json.loads(config_file.read_text())
    del config[key]
    config_file.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError) as error:
        applied_to(DistributedDataClassifier(model_identifier=checkpoint))
    assert str(config_file) in str(error.value)
    assert repr(key) in str(error.value)


def test_config_json_missing_or_broken(applied_to, checkpoints, copy_checkpoint):
    checkpoint = copy_checkpoint(checkpoints["hf"], "broken-config")
    config_file = checkpoint / "config.json"
    config_file.write_text("{not json")
    with pytest.raises(ModelLoadError, match="Cannot read") as error:
        applied_to(DistributedDataClassifier(model_identifier=checkpoint))
    assert str(config_file) in str(error.value)
    config_file.unlink()
    with pytest.raises(ModelLoadError, match="missing") as error:
        applied_to(DistributedDataClassifier(model_identifier=checkpoint))
    assert str(config_file) in str(error.value)


@pytest.mark.parametrize("layout", ["head", "hf"])
def test_truncated_safetensors(layout, checkpoints, copy_checkpoint, frame):
    checkpoint = copy_checkpoint(checkpoints[layout], f"truncated-{layout}")
    weights = checkpoint / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as handle:
        handle.truncate(size // 2)
    with pytest.raises(ModelLoadError) as error:
        get_model(str(checkpoint), None, "cpu")
    assert str(weights) in str(error.value)
    assert "truncated" in str(error.value)
    # The safetensors header is checked when the operator is applied: no compute needed.
    with pytest.raises(ModelLoadError, match="truncated"):
        DistributedDataClassifier(model_identifier=checkpoint)(dd.from_pandas(frame, npartitions=2))


def test_pickle_weights_refused(applied_to, checkpoints, copy_checkpoint):
    checkpoint = copy_checkpoint(checkpoints["hf"], "pickled")
    (checkpoint / "model.safetensors").unlink()
    (checkpoint / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ModelLoadError) as error:
        applied_to(DistributedDataClassifier(model_identifier=checkpoint))
    message = str(error.value)
    assert "pytorch_model.bin" in message and "refused" in message and "safetensors" in message


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"padding_side": "middle"}, r"padding_side must be one of \('right', 'left'\), got 'middle'"),
        ({"batch_tokens": 0}, r"batch_tokens must be a positive integer or None, got 0"),
        ({"batch_tokens": -8}, r"batch_tokens must be a positive integer"),
        ({"batch_tokens": 1.5}, r"batch_tokens must be a positive integer"),
        ({"max_batch_rows": 0}, r"max_batch_rows must be a positive integer, got 0"),
        ({"max_seq_length": True}, r"max_seq_length must be a positive integer"),
        ({"autocast": "int4"}, r"autocast must be one of .*got 'int4'"),
        ({"sort_by_length": "yes"}, r"sort_by_length must be True or False"),
        ({"device": "tpu:x"}, r"device must be 'auto', 'cpu'"),
        ({"filter_by": []}, r"filter_by must be a non-empty list"),
        ({"label_field": ""}, r"label_field must be a non-empty column name"),
        ({"label_field": "x", "score_field": "x"}, r"Output column names must differ"),
    ],
)
def test_bad_option_values(applied_to, checkpoints, options, pattern):
    # Checked when the operator is built, so no later than when it is applied.
    with pytest.raises(InputError, match=pattern):
        applied_to(DistributedDataClassifier(model_identifier=checkpoints["head"], **options))


def test_missing_model_identifier():
    with pytest.raises(InputError, match="model_identifier is required"):
        DistributedDataClassifier(model_identifier="")


def test_errors_are_value_or_file_errors():
    # Callers that catch the builtin exceptions keep working.
    assert issubclass(InputError, ValueError)
    assert issubclass(ModelLoadError, ValueError)
    assert issubclass(ModelNotFoundError, FileNotFoundError)


def test_hf_hub_offline_is_set_for_the_suite():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


# --------------------------------------------------------------------------- precision defaults


@pytest.mark.parametrize(
    ("env", "detected", "expected"),
    [("", True, torch.bfloat16), ("", False, None), ("0", True, None), ("1", False, torch.bfloat16)],
    ids=["bf16-cpu", "avx2-cpu", "forced-off", "forced-on"],
)
def test_cpu_autocast_default_follows_bf16_instructions(monkeypatch, env, detected, expected):
    monkeypatch.setenv(CPU_BF16_ENV, env)
    monkeypatch.setattr(engine_module, "_cpu_has_bf16_instructions", lambda: detected)
    assert autocast_dtype(torch.device("cpu"), True) is expected
    assert autocast_dtype(torch.device("cpu"), False) is None
    assert autocast_dtype(torch.device("cpu"), "bf16") is torch.bfloat16


def test_default_autocast_on_a_bf16_cpu_runs_bf16(monkeypatch, checkpoints, varied_texts):
    frame = text_frame(varied_texts)
    options = dict(model_identifier=checkpoints["hf"], label_field="l", score_field="p", batch_tokens=1024)
    fp32 = score_matrix(DistributedDataClassifier(**options, autocast=False)(frame)["p"])
    forced = score_matrix(DistributedDataClassifier(**options, autocast="bf16")(frame)["p"])
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    default = score_matrix(DistributedDataClassifier(**options)(frame)["p"])
    # bf16, not fp32: only "same batches, fp32, one CPU" is exact; oneDNN may pick another bf16 kernel per call.
    np.testing.assert_allclose(default, forced, rtol=0, atol=1e-6)
    assert np.nanmax(np.abs(default - fp32)) > 1e-4  # bf16 rounding (~4e-3 relative) shows; fp32 would not


def test_bad_cpu_bf16_setting_fails_when_applied(monkeypatch, checkpoints):
    monkeypatch.setenv(CPU_BF16_ENV, "yes")
    with pytest.raises(InputError, match="NEMO_CLS_DASK_CPU_BF16 must be 0, 1 or unset, got 'yes'"):
        DistributedDataClassifier(model_identifier=checkpoints["hf"])(dd.from_pandas(text_frame(["a b"]), npartitions=1))
