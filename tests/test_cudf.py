"""cuDF partitions (marker ``cudf``): every output column equals the pandas path.

Needs RAPIDS (cuDF, dask-cudf) and a CUDA GPU; skips otherwise. With RAPIDS installed
(``pip install -c ci/constraints-gpu-cu13.txt -e ".[gpu-cu13,dev]"``) run
``python3 -m pytest -m cudf tests/test_cudf.py``. Values are compared after bringing the
cuDF result to the host with :func:`frames.to_pandas_frame`; the model runs in fp32 on the
same device for both backends, so float columns must agree exactly.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from nemo_cls_dask import DistributedDataClassifier, InputError, frames

pytestmark = [
    pytest.mark.cudf,
    pytest.mark.skipif(
        importlib.util.find_spec("cudf") is None or not torch.cuda.is_available(),
        reason="needs RAPIDS cuDF and a CUDA GPU",
    ),
]

TEXTS = ["A first document about packages.", None, "Second one, a bit longer than the first.", "", "ok", None]


def _frames():
    import cudf

    pdf = pd.DataFrame({"text": TEXTS, "n": range(len(TEXTS))}, index=[10, 11, 12, 13, 14, 15])
    return pdf, cudf.from_pandas(pdf)


def _assert_same(out_cudf, out_pandas) -> None:
    host = frames.to_pandas_frame(out_cudf)
    assert list(host.columns) == list(out_pandas.columns)
    assert host.index.tolist() == out_pandas.index.tolist()
    for name in out_pandas.columns:
        expected, got = out_pandas[name], host[name]
        assert got.dtype == expected.dtype, name
        assert frames.column_values(got) == frames.column_values(expected) or _floats_equal(got, expected), name


def _floats_equal(got, expected) -> bool:
    a, b = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return bool(np.array_equal(a, b, equal_nan=True))


@pytest.mark.parametrize("device", ["cuda", "cpu"])  # cpu: host tensors into cuDF columns
def test_every_column_builder_matches_pandas(device):
    pdf, gdf = _frames()
    valid = np.array([True, False, True, True, False, True])
    tensors = {
        "codes": torch.tensor([0, 1, 1, 0, 1, 0], device=device),
        "matrix": torch.arange(18, dtype=torch.float32, device=device).reshape(6, 3) / 7,
        "chosen": torch.tensor([[1, 0, 1], [1, 1, 1], [0, 0, 0], [0, 1, 0], [1, 1, 0], [1, 1, 1]], device=device).bool(),
        "ints": torch.tensor([1, 2, 3, 4, 5, 6], device=device),
    }
    for like, expected_backend in ((pdf, "pandas"), (gdf, "cudf")):
        columns = {
            "label": frames.label_column(("a", "b"), tensors["codes"], valid, like),
            "score": frames.float_column(tensors["matrix"][:, 0], valid, like),
            "score64": frames.float_column(tensors["matrix"][:, 1], valid, like, dtype="float64"),
            "int": frames.int_column(tensors["ints"], valid, like),
            "probs": frames.float_list_column(tensors["matrix"], valid, like),
            "probs_all": frames.float_list_column(tensors["matrix"], np.ones(6, dtype=bool), like),
            "tags": frames.label_list_column(("x", "y", "z"), tensors["chosen"], valid, like),
        }
        out = frames.assign_columns(like, columns)
        assert frames.is_cudf(out) == (expected_backend == "cudf")
        if expected_backend == "pandas":
            reference = out
        else:
            _assert_same(out, reference)
            assert out["score"].null_count == 0 and out["score"].isnull().sum() == 0  # NaN, not null
            assert out["probs"].null_count == 2 and out["int"].null_count == 2


def test_meta_columns_have_the_mapped_cudf_dtypes():
    import cudf

    _, gdf = _frames()
    for dtype in (frames.LABEL_DTYPE, frames.SCORE_LIST_DTYPE, frames.LABEL_LIST_DTYPE, np.dtype("float32"), "Int64"):
        column = frames.empty_column(dtype, gdf)
        assert len(column) == 0
        name = frames.cudf_dtype_name(dtype)
        if name.startswith("list<"):
            assert isinstance(column.dtype, cudf.ListDtype)
        elif name == "str":
            assert str(column.dtype) in {"str", "object"}  # cuDF's name for its string dtype varies
        else:
            assert str(column.dtype) == name


@pytest.mark.parametrize("options", [
    {"score_field": "probs", "embedding_field": "emb", "uncertainty": ["entropy", "margin"]},
    {"filter_by": ["b"]},
])
def test_operator_on_cudf_equals_pandas(head_checkpoint, options):
    pdf, gdf = _frames()
    classifier = DistributedDataClassifier(model_identifier=head_checkpoint, autocast=False, **options)
    _assert_same(classifier(gdf), classifier(pdf))


def test_multi_label_lists_and_filter_on_cudf(multilabel_checkpoint):
    pdf, gdf = _frames()
    for filter_by in (None, ["topic-1"], ["nothing-matches"]):
        classifier = DistributedDataClassifier(
            model_identifier=multilabel_checkpoint, label_field="tags", autocast=False, filter_by=filter_by
        )
        try:
            expected = classifier(pdf)
        except InputError:
            continue
        _assert_same(classifier(gdf), expected)


def test_dask_cudf_partitions_match_meta_and_pandas(head_checkpoint, regression_checkpoint):
    import dask
    import dask.dataframe as dd

    pdf, _ = _frames()
    for checkpoint in (head_checkpoint, regression_checkpoint):
        classifier = DistributedDataClassifier(model_identifier=checkpoint, score_field=None, autocast=False)
        source = dd.from_pandas(pdf, npartitions=2).to_backend("cudf")
        result = classifier(source)
        assert frames.is_cudf(result._meta)
        out = result.compute(scheduler="sync")
        for name in result._meta.columns:
            assert str(out[name].dtype) == str(result._meta[name].dtype), name
        _assert_same(out, classifier(pdf))
    with dask.config.set({"dataframe.backend": "cudf"}):
        assert frames.is_cudf(dd.from_dict({"text": ["a"]}, npartitions=1)._meta)


def test_list_offsets_limit_on_cudf(monkeypatch):
    _, gdf = _frames()
    monkeypatch.setattr(frames, "MAX_LIST_VALUES", 17)
    with pytest.raises(InputError, match="exceeds"):
        frames.float_list_column(torch.zeros(6, 3, device="cuda"), np.ones(6, dtype=bool), gdf)


def test_backend_neutral_steps_on_cudf():
    _, gdf = _frames()
    whole = frames.concat_frames([gdf.iloc[:3], gdf.iloc[3:]])
    assert frames.is_cudf(whole) and whole.index.to_arrow().to_pylist() == [10, 11, 12, 13, 14, 15]
    table = frames.to_arrow_table(whole)
    assert isinstance(table, pa.Table) and table.num_rows == 6
    assert frames.column_values(whole["n"]) == list(range(6))


def test_cli_with_backend_cudf(tmp_path, head_checkpoint):
    from nemo_cls_dask.cli import main

    source = tmp_path / "in" / "docs.jsonl"
    source.parent.mkdir()
    source.write_bytes(b'{"text": "one text"}\n{"text": "bad \xff byte"}\n{"text": null}\n')
    output = tmp_path / "out"
    code = main(["classify", str(source), str(output), "--model", str(head_checkpoint), "--backend", "cudf",
                 "--cluster-device", "gpu", "--n-workers", "1", "--encoding-errors", "replace"])
    assert code == 0
    written = pd.read_json(output / "docs.jsonl", lines=True)
    assert written["text"].tolist()[:2] == ["one text", "bad \ufffd byte"]  # the reader's option held
    assert written["preds"].isna().tolist() == [False, False, True]
