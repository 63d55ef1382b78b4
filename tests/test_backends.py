"""CPU tests of the GPU path's decisions (issue 17): each runs here, without a GPU or RAPIDS.

* host tensors reach cuDF through the host, CUDA tensors through DLPack (a stand-in
  ``cupy`` module that, like the real one, refuses CPU tensors in ``from_dlpack``);
* out-of-memory texts of torch and RMM halve a batch, other errors do not;
* list columns refuse what 32-bit offsets cannot address (the limit lowered for the test);
* one NaN/null contract for both backends, in meta and partitions;
* the backend choice (``auto``/``pandas``/``cudf``) and backend-neutral frame steps;
* ``get_client`` shares an RMM allocator with torch and cupy when one is asked for.
"""

from __future__ import annotations

import sys
import types

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from nemo_cls_dask import DistributedDataClassifier, FineWebEduClassifier, InputError, frames
from nemo_cls_dask.batching import forward_with_oom_split, is_out_of_memory
from nemo_cls_dask.testing import make_nvidia_checkpoint

# ------------------------------------------------------------------ host vs device route


class _FakeCupy(types.ModuleType):
    """numpy standing in for cupy, with cupy's refusal of CPU tensors in ``from_dlpack``."""

    def __init__(self) -> None:
        super().__init__("cupy")
        self.calls: list[str] = []

    def from_dlpack(self, tensor):
        self.calls.append("from_dlpack")
        if tensor.device.type == "cpu":
            raise TypeError("CPU tensor given to cupy.from_dlpack (as the real cupy does)")
        return np.asarray(tensor.detach().cpu())

    def asarray(self, array):
        self.calls.append("asarray")
        return np.asarray(array)


class _LooksLikeCuda(torch.Tensor):
    """A CPU tensor that reports a CUDA device, to follow the device route without a GPU."""

    @property
    def device(self):  # noqa: D401 - mimics torch.Tensor.device
        return torch.device("cuda", 0)


@pytest.fixture
def fake_cupy(monkeypatch):
    module = _FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", module)
    return module


def test_host_tensors_and_arrays_take_the_host_route(fake_cupy):
    from nemo_cls_dask.cudf_columns import device_array

    assert not frames.tensor_on_device(torch.arange(3))
    assert not frames.tensor_on_device(np.arange(3))
    np.testing.assert_array_equal(device_array(torch.arange(3)), [0, 1, 2])
    np.testing.assert_array_equal(device_array(np.array([True, False])), [True, False])
    half = device_array(torch.tensor([0.5, 1.5], dtype=torch.bfloat16))
    assert half.dtype == np.float32 and half.tolist() == [0.5, 1.5]
    assert fake_cupy.calls == ["asarray", "asarray", "asarray"]


def test_cuda_tensors_take_the_dlpack_route(fake_cupy):
    from nemo_cls_dask.cudf_columns import device_array

    tensor = torch.arange(4.0).as_subclass(_LooksLikeCuda)
    assert frames.tensor_on_device(tensor)
    np.testing.assert_array_equal(device_array(tensor), [0.0, 1.0, 2.0, 3.0])
    assert fake_cupy.calls == ["from_dlpack"]


# ------------------------------------------------------------------ out of memory


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: out of memory"),
        MemoryError("std::bad_alloc: out_of_memory: CUDA error at: rmm/mr/device/cuda_memory_resource.hpp"),
        RuntimeError("std::bad_alloc: out_of_memory: RMM failure at: pool_memory_resource.hpp:257: Maximum pool size exceeded"),
        MemoryError("std::bad_alloc"),
    ],
    ids=["torch", "torch-runtime", "rmm-memoryerror", "rmm-pool", "bad-alloc"],
)
def test_out_of_memory_texts_of_torch_and_rmm_halve_the_batch(error):
    assert is_out_of_memory(error)
    seen = []

    def forward(input_ids, attention_mask):
        seen.append(input_ids.shape[0])
        if input_ids.shape[0] > 2:
            raise error
        return input_ids.float().sum(1, keepdim=True)

    ids = torch.arange(1, 25).reshape(8, 3)
    out = forward_with_oom_split(forward, ids, torch.ones_like(ids))
    torch.testing.assert_close(out, ids.float().sum(1, keepdim=True), rtol=0, atol=0)
    assert seen[0] == 8 and max(seen[1:]) == 4 and min(seen) == 2


@pytest.mark.parametrize("error", [MemoryError(), ValueError("out of memory"), RuntimeError("shape mismatch")])
def test_other_errors_are_not_out_of_memory(error):
    assert not is_out_of_memory(error)

    def forward(input_ids, attention_mask):
        raise error

    ids = torch.ones((4, 2), dtype=torch.int64)
    with pytest.raises(type(error)):
        forward_with_oom_split(forward, ids, ids)


# ------------------------------------------------------------------ list offsets


def test_list_column_at_the_offset_limit_is_built_and_one_more_is_refused(monkeypatch):
    monkeypatch.setattr(frames, "MAX_LIST_VALUES", 12)
    like = pd.DataFrame(index=[5, 6, 7])
    matrix = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    column = frames.float_list_column(matrix, np.array([True, False, True]), like)
    assert column.index.tolist() == [5, 6, 7]
    assert pa.array(column).to_pylist() == [[0, 1, 2, 3], None, [8, 9, 10, 11]]
    with pytest.raises(InputError, match=r"4 rows x 4 values \(16\) exceeds the 12 values"):
        frames.float_list_column(torch.zeros(4, 4), np.ones(4, dtype=bool), pd.DataFrame(index=range(4)))


def test_operator_refuses_an_embedding_column_beyond_the_offsets(monkeypatch, head_checkpoint):
    texts = ["short text", "another short one", "and a third"]
    classifier = DistributedDataClassifier(model_identifier=head_checkpoint, embedding_field="emb")
    width = len(classifier(pd.DataFrame({"text": texts}))["emb"].iloc[0])
    monkeypatch.setattr(frames, "MAX_LIST_VALUES", 3 * width - 1)
    with pytest.raises(InputError, match="repartition"):
        classifier(pd.DataFrame({"text": texts}))


# ------------------------------------------------------------------ NaN vs null


def _check_contract(out: pd.DataFrame, meta: pd.DataFrame, added: list[str], null_row: int) -> None:
    for name in added:
        column, dtype = out[name], meta[name].dtype
        assert column.dtype == dtype, name
        value = column.iloc[null_row]
        kind = _kind(dtype)
        if kind == "float":
            assert isinstance(value, (float, np.floating)) and np.isnan(value), name
        elif kind == "int":
            assert value is pd.NA, name
        elif kind == "list":
            assert pa.array(column).to_pylist()[null_row] is None, name
        else:
            assert pd.isna(value) and not isinstance(value, (list, np.ndarray)), name
        assert frames.MISSING_VALUE[kind] == ("NaN" if kind == "float" else "null")
        expected = {"int": "int64", "label": "str", "list": "list<"}.get(kind) or np.dtype(dtype).name
        assert frames.cudf_dtype_name(dtype).startswith(expected), name


def _kind(dtype) -> str:
    if isinstance(dtype, pd.ArrowDtype):
        return "list"
    if str(dtype) == "Int64":
        return "int"
    if isinstance(dtype, pd.StringDtype):
        return "label"
    assert np.dtype(dtype).kind == "f", dtype
    return "float"


def test_missing_rows_follow_one_contract_in_meta_and_partitions(
    tmp_path, head_checkpoint, regression_checkpoint, multilabel_checkpoint
):
    texts = ["a first text", None, "a third text", "fourth"]
    source = dd.from_pandas(pd.DataFrame({"text": texts}), npartitions=2)
    classifiers = [
        DistributedDataClassifier(
            model_identifier=head_checkpoint, score_field="probs", embedding_field="emb", uncertainty=["entropy"]
        ),
        DistributedDataClassifier(model_identifier=regression_checkpoint, label_field="edu"),
        DistributedDataClassifier(model_identifier=multilabel_checkpoint, label_field="tags"),
        FineWebEduClassifier(model_identifier=make_nvidia_checkpoint("fineweb-edu", tmp_path / "fw")),
    ]
    for classifier in classifiers:
        result = classifier(source)
        added = [name for name in result._meta.columns if name != "text"]
        out = result.compute(scheduler="sync")
        _check_contract(out, result._meta, added, null_row=1)
    assert {frames.cudf_dtype_name(frames.SCORE_LIST_DTYPE), frames.cudf_dtype_name(frames.LABEL_LIST_DTYPE)} == {
        "list<float32>",
        "list<str>",
    }


# ------------------------------------------------------------------ backend choice


@pytest.mark.parametrize(
    "requested, gpu_cluster, installed, expected",
    [
        ("auto", True, True, "cudf"),
        ("auto", True, False, "pandas"),
        ("auto", False, True, "pandas"),
        ("auto", False, False, "pandas"),
        ("pandas", True, True, "pandas"),
        ("cudf", True, True, "cudf"),
    ],
)
def test_backend_choice(requested, gpu_cluster, installed, expected):
    assert frames.resolve_backend(requested, gpu_cluster=gpu_cluster, cudf_installed=installed) == expected


def test_backend_cudf_without_rapids_or_gpu_is_a_clear_error():
    with pytest.raises(InputError, match=r"needs RAPIDS cuDF and dask-cudf: pip install"):
        frames.resolve_backend("cudf", gpu_cluster=True, cudf_installed=False)
    with pytest.raises(InputError, match="needs a GPU cluster"):
        frames.resolve_backend("cudf", gpu_cluster=False, cudf_installed=True)
    with pytest.raises(InputError, match="backend must be one of"):
        frames.resolve_backend("arrow", gpu_cluster=False)
    assert frames.cudf_available() is False  # this machine has no RAPIDS


# ------------------------------------------------------------------ backend-neutral steps


def _part(start: int, rows: int) -> pd.DataFrame:
    index = pd.RangeIndex(start, start + rows)
    valid = np.arange(rows) % 2 == 0
    like = pd.DataFrame(index=index)
    return frames.assign_columns(
        pd.DataFrame({"text": [f"t{i}" for i in index]}, index=index),
        {
            "label": frames.label_column(("a", "b"), torch.arange(rows) % 2, valid, like),
            "probs": frames.float_list_column(torch.full((rows, 2), 0.5), valid, like),
            "tags": frames.label_list_column(("x", "y"), torch.ones(rows, 2, dtype=torch.bool), valid, like),
        },
    )


def test_concat_arrow_and_values_keep_rows_in_order():
    parts = [_part(0, 3), _part(3, 2)]
    whole = frames.concat_frames(parts)
    assert whole.index.tolist() == [0, 1, 2, 3, 4]
    assert frames.concat_frames(parts[:1]) is parts[0]
    assert frames.to_pandas_frame(whole) is whole
    table = frames.to_arrow_table(whole)
    assert table.column("probs").type == pa.list_(pa.float32())
    assert table.column("tags").to_pylist() == [["x", "y"], None, ["x", "y"], ["x", "y"], None]
    labels = frames.column_values(whole["label"])
    assert labels[0] == "a" and pd.isna(labels[1]) and labels[2:4] == ["a", "a"] and pd.isna(labels[4])
    assert frames.column_values(whole["probs"]) == [[0.5, 0.5], None, [0.5, 0.5], [0.5, 0.5], None]
    with pytest.raises(InputError, match="at least one frame"):
        frames.concat_frames([])


def test_on_backend_pandas_keeps_the_frame_and_checks_the_name():
    source = dd.from_pandas(_part(0, 4), npartitions=2)
    assert frames.on_backend(source, "pandas") is source
    part = _part(0, 2)
    assert frames.on_backend(part, "pandas") is part
    with pytest.raises(InputError, match="'pandas' or 'cudf'"):
        frames.on_backend(source, "auto")


def test_labels_mask_single_and_multi_label_never_match_null_rows():
    part = _part(0, 4)
    assert frames.labels_mask(part["label"], ["a"], multi_label=False).tolist() == [True, False, True, False]
    assert frames.labels_mask(part["tags"], ["y", "z"], multi_label=True).tolist() == [True, False, True, False]
    assert frames.labels_mask(part["tags"], ["z"], multi_label=True).tolist() == [False] * 4


# ------------------------------------------------------------------ RMM on a GPU cluster


def test_get_client_shares_an_rmm_allocator_with_torch_and_cupy(monkeypatch):
    import distributed

    from nemo_cls_dask import cluster

    made = []

    class FakeCUDACluster:
        def __init__(self, **options):
            made.append(options)

    fake = types.ModuleType("dask_cuda")
    fake.LocalCUDACluster = FakeCUDACluster
    monkeypatch.setitem(sys.modules, "dask_cuda", fake)
    monkeypatch.setattr(cluster, "visible_gpu_count", lambda: 2)
    monkeypatch.setattr(distributed, "Client", lambda cluster_object: ("client", cluster_object))
    client = cluster.get_client(device="gpu", rmm_async=True)
    assert client[0] == "client" and isinstance(client[1], FakeCUDACluster)
    assert made[-1]["rmm_allocator_external_lib_list"] == ["torch", "cupy"] and made[-1]["rmm_async"] is True
    cluster.get_client(device="gpu")
    assert "rmm_allocator_external_lib_list" not in made[-1]  # no RMM asked for: libraries keep their own
    cluster.get_client(device="gpu", rmm_pool_size="1GB", rmm_allocator_external_lib_list=None)
    assert made[-1]["rmm_allocator_external_lib_list"] is None  # the caller's choice stands


# ------------------------------------------------------------------ the CLI's backend choice


def _jsonl_input(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    (source / "docs.jsonl").write_bytes(b'{"text": "fine text"}\n{"text": "broken \xff here"}\n{"text": null}\n')
    return source


def test_cli_backend_cudf_without_rapids_fails_before_a_cluster_starts(tmp_path, head_checkpoint, monkeypatch, capsys):
    from nemo_cls_dask import cluster
    from nemo_cls_dask.cli import main

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(cluster, "get_client", no_cluster)
    output = tmp_path / "out"
    code = main(["classify", str(_jsonl_input(tmp_path)), str(output), "--model", str(head_checkpoint),
                 "--backend", "cudf"])
    assert code == 2
    assert "backend 'cudf' needs RAPIDS cuDF and dask-cudf" in capsys.readouterr().err
    assert not (output / "docs.jsonl").exists()


def test_cli_backend_auto_on_a_cpu_cluster_is_pandas_and_keeps_encoding_errors(tmp_path, head_checkpoint, capsys):
    from nemo_cls_dask import classify_files

    source = _jsonl_input(tmp_path)
    classifier = DistributedDataClassifier(model_identifier=head_checkpoint)
    with dask_config_backend("cudf"):  # a user's global setting must not reach the file readers
        result = classify_files(source, tmp_path / "out", classifier, encoding_errors="replace", backend="auto",
                                cluster={"device": "cpu", "n_workers": 1})
    assert result.backend == "pandas" and len(result.written) == 1
    out = pd.read_json(tmp_path / "out" / "docs.jsonl", lines=True)
    assert out["text"].tolist()[:2] == ["fine text", "broken \ufffd here"]
    assert out["preds"].isna().tolist() == [False, False, True]


def test_read_frame_reads_on_the_host_whatever_the_global_backend(tmp_path):
    from nemo_cls_dask.io import read_frame

    source = _jsonl_input(tmp_path) / "docs.jsonl"
    with dask_config_backend("cudf"):
        frame = read_frame(source, encoding_errors="replace")
        assert not frames.is_cudf(frame._meta)
        assert frame.compute()["text"].tolist()[:2] == ["fine text", "broken \ufffd here"]
    with pytest.raises(InputError, match="'pandas' or 'cudf'"):
        read_frame(source, backend="auto")


def dask_config_backend(name: str):
    import dask

    return dask.config.set({"dataframe.backend": name})
