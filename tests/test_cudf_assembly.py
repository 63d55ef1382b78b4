"""The cuDF list-column assembly, checked on the CPU with numpy standing in for the GPU.

``cudf_columns`` builds list columns from device offsets, a child column and a validity
mask through pylibcudf. Here small stand-ins for ``cupy`` (numpy), ``pylibcudf`` (columns
that keep numpy/Arrow data) and ``cudf`` (a Series made from such a column) let that
assembly run without RAPIDS, and its result is compared with the pandas path's Arrow
arrays. The stand-ins follow the signatures of pylibcudf 26.10 (``Column(data_type, size,
data, mask, null_count, offset, children)``, ``transform.bools_to_mask`` returning
``(mask, null_count)``, ``copying.gather(table, map, policy)``); ``tests/test_cudf.py``
checks the real thing on a GPU.
"""

from __future__ import annotations

import enum
import logging
import sys
import types

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from nemo_cls_dask import frames


class _Column:
    def __init__(self, data_type, size, data, mask, null_count, offset, children):
        assert data_type.id is _TypeId.LIST and data is None and offset == 0
        self.size, self.mask, self.null_count, self.children = size, mask, null_count, list(children)

    @classmethod
    def from_cuda_array_interface(cls, array):
        return _Leaf(pa.array(np.asarray(array)))

    @classmethod
    def from_arrow(cls, array):
        return _Leaf(array)

    def to_arrow(self) -> pa.Array:
        offsets, child = self.children
        assert isinstance(offsets, _Leaf) and offsets.array.type == pa.int32()  # libcudf size_type
        assert len(offsets.array) == self.size + 1
        valid = np.ones(self.size, dtype=bool) if self.mask is None else self.mask
        assert int((~valid).sum()) == self.null_count
        return pa.ListArray.from_arrays(offsets.array, child.to_arrow(), mask=pa.array(~valid))


class _Leaf:
    def __init__(self, array: pa.Array):
        self.array = array

    def to_arrow(self) -> pa.Array:
        return self.array


class _TypeId(enum.Enum):
    LIST = "list"


class _Table:
    def __init__(self, columns):
        self._columns = list(columns)

    def columns(self):
        return self._columns


def _fake_modules() -> dict[str, types.ModuleType]:
    cupy = types.ModuleType("cupy")
    for name in ("asarray", "float32", "int32", "bool_", "zeros", "cumsum", "flatnonzero"):
        setattr(cupy, name, getattr(np, name))
    cupy.from_dlpack = lambda tensor: np.asarray(tensor.detach().cpu())

    plc = types.ModuleType("pylibcudf")
    plc.Column, plc.Table, plc.TypeId = _Column, _Table, _TypeId
    plc.DataType = lambda type_id: types.SimpleNamespace(id=type_id)
    plc.transform = types.SimpleNamespace(
        bools_to_mask=lambda column: (np.asarray(column.array.to_numpy(zero_copy_only=False), dtype=bool),
                                      int((~np.asarray(column.array.to_numpy(zero_copy_only=False), dtype=bool)).sum()))
    )
    plc.copying = types.SimpleNamespace(
        OutOfBoundsPolicy=types.SimpleNamespace(DONT_CHECK="dont_check"),
        gather=lambda table, gather_map, policy: _Table(
            [_Leaf(column.array.take(gather_map.array)) for column in table.columns()]
        ),
    )

    cudf = types.ModuleType("cudf")

    class Series(pd.Series):
        @classmethod
        def from_pylibcudf(cls, column):
            return cls(pd.arrays.ArrowExtensionArray(column.to_arrow()))

    Series.__module__ = "cudf"
    cudf.Series = Series
    return {"cupy": cupy, "pylibcudf": plc, "cudf": cudf}


@pytest.fixture
def cudf_columns(monkeypatch):
    for name, module in _fake_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    from nemo_cls_dask import cudf_columns

    return cudf_columns


@pytest.fixture
def cudf_warnings(caplog, cudf_columns):
    """The captured log of ``cudf_columns``'s own logger at WARNING, whatever other code in this
    process did to the root logger's level."""
    caplog.set_level(logging.WARNING, logger=cudf_columns.logger.name)
    return caplog


VALIDITY = [np.ones(5, dtype=bool), np.array([True, False, True, True, False]), np.zeros(5, dtype=bool)]


@pytest.mark.parametrize("valid", VALIDITY, ids=["all-valid", "two-null", "all-null"])
def test_float_lists_assembled_on_the_device_equal_the_pandas_path(cudf_columns, cudf_warnings, valid):
    matrix = torch.arange(15, dtype=torch.float32).reshape(5, 3) / 4
    like = pd.DataFrame(index=[3, 4, 5, 6, 7])
    expected = pa.array(frames.float_list_column(matrix, valid, like)).to_pylist()
    built = cudf_columns.float_list_column(matrix, valid, like)
    assert "through the host" not in cudf_warnings.text  # the device assembly ran, not the fallback
    assert built.index.tolist() == [3, 4, 5, 6, 7]
    assert pa.array(built).to_pylist() == expected
    # Null rows hold no values (no "non-empty nulls"): the child has valid rows x width values.
    assert len(pa.array(built).values) == int(valid.sum()) * 3


@pytest.mark.parametrize("valid", VALIDITY, ids=["all-valid", "two-null", "all-null"])
def test_label_lists_assembled_on_the_device_equal_the_pandas_path(cudf_columns, cudf_warnings, valid):
    chosen = torch.tensor([[1, 0, 1], [1, 1, 1], [0, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=torch.bool)
    like = pd.DataFrame(index=range(5))
    expected = pa.array(frames.label_list_column(("x", "y", "z"), chosen, valid, like)).to_pylist()
    built = cudf_columns.label_list_column(("x", "y", "z"), chosen, valid, like)
    assert "through the host" not in cudf_warnings.text
    assert pa.array(built).to_pylist() == expected


def test_a_missing_pylibcudf_call_falls_back_to_the_host(cudf_columns, monkeypatch, cudf_warnings):
    monkeypatch.delattr(sys.modules["pylibcudf"], "transform")
    cudf = sys.modules["cudf"]
    monkeypatch.setattr(cudf.Series, "from_arrow", classmethod(lambda cls, array: cls(pd.arrays.ArrowExtensionArray(array))), raising=False)
    valid = np.array([True, False, True])
    built = cudf_columns.float_list_column(torch.ones(3, 2), valid, pd.DataFrame(index=range(3)))
    assert "copying through the host" in cudf_warnings.text
    assert pa.array(built).to_pylist() == [[1.0, 1.0], None, [1.0, 1.0]]
