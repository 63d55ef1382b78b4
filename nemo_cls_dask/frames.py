"""The only module that knows pandas/numpy from cuDF/cupy.

Output columns are built with the partition's own backend: on pandas, numpy arrays and
Arrow ``list<float32>`` columns; on cuDF, columns made straight from the torch tensors on
the GPU through DLPack (no host round trip). RAPIDS is imported lazily, only when a cuDF
frame actually arrives, so this package imports on machines without it.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

logger = logging.getLogger(__name__)

#: dtype of label columns: pandas' default string dtype (NaN for missing).
LABEL_DTYPE = pd.StringDtype(na_value=np.nan)
#: dtype of probability columns: one float32 per label, in id order.
SCORE_LIST_DTYPE = pd.ArrowDtype(pa.list_(pa.float32()))
#: dtype of a list of labels (multi-label predictions).
LABEL_LIST_DTYPE = pd.ArrowDtype(pa.list_(pa.string()))


def is_cudf(frame: Any) -> bool:
    """True for cuDF DataFrames/Series, checked without importing cuDF."""
    return type(frame).__module__.split(".")[0] == "cudf"


def is_dask(frame: Any) -> bool:
    """True for dask DataFrames (dask-expr collections)."""
    return hasattr(frame, "map_partitions") and hasattr(frame, "_meta")


def text_values(series: Any) -> list[Any]:
    """The text column as Python objects on the host (tokenizers run on the CPU)."""
    if is_cudf(series):
        return series.to_arrow().to_pylist()
    return series.tolist()


# ---------------------------------------------------------------------------- pandas


def _host(array: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().to("cpu").numpy()
    return np.asarray(array)


def label_column(names: tuple[str, ...], codes: torch.Tensor, valid: np.ndarray, like: Any) -> Any:
    """A string column: ``names[codes[i]]``, null where ``valid`` is False."""
    if is_cudf(like):
        return _cudf_label_column(names, codes, valid, like)
    picked = np.asarray(names, dtype=object)[_host(codes)] if len(codes) else np.zeros(0, dtype=object)
    picked = picked.copy()
    picked[~valid] = np.nan
    return pd.Series(picked, index=like.index, dtype=LABEL_DTYPE)


def float_list_column(matrix: torch.Tensor, valid: np.ndarray, like: Any) -> Any:
    """A ``list<float32>`` column with one row of ``matrix`` per row, null where invalid."""
    if is_cudf(like):
        return _cudf_float_list_column(matrix, valid, like)
    values = np.ascontiguousarray(_host(matrix).astype(np.float32, copy=False))
    rows, width = values.shape if values.ndim == 2 else (len(valid), 0)
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * width)
    array = pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1)), mask=pa.array(~valid))
    return pd.Series(pd.arrays.ArrowExtensionArray(array), index=like.index)


def label_list_column(names: tuple[str, ...], chosen: torch.Tensor, valid: np.ndarray, like: Any) -> Any:
    """A ``list<string>`` column: the names where ``chosen[i, j]`` is True, null where invalid."""
    flags = _host(chosen).astype(bool)
    lists = [[names[j] for j in np.flatnonzero(row)] if ok else None for row, ok in zip(flags, valid)]
    array = pa.array(lists, type=pa.list_(pa.string()))
    if is_cudf(like):
        return _cudf_from_arrow(array, like)
    return pd.Series(pd.arrays.ArrowExtensionArray(array), index=like.index)


def float_column(values: torch.Tensor, valid: np.ndarray, like: Any, dtype: str = "float32") -> Any:
    """A float column, NaN where invalid."""
    if is_cudf(like):
        import cudf
        import cupy

        data = cupy.from_dlpack(values.detach().contiguous()).astype(dtype)
        data[cupy.asarray(~valid)] = cupy.nan
        return cudf.Series(data, index=like.index)
    data = _host(values).astype(dtype, copy=True)
    data[~valid] = np.nan
    return pd.Series(data, index=like.index, dtype=dtype)


def int_column(values: torch.Tensor, valid: np.ndarray, like: Any) -> Any:
    """A nullable Int64 column (null where invalid)."""
    if is_cudf(like):
        import cudf
        import cupy

        series = cudf.Series(cupy.from_dlpack(values.detach().contiguous()).astype("int64"), index=like.index)
        return series.where(cudf.Series(cupy.asarray(valid), index=like.index))
    data = _host(values).astype(np.int64)
    return pd.Series(pd.arrays.IntegerArray(data, ~valid), index=like.index)


def empty_column(dtype: Any, like: Any) -> Any:
    """A zero-row column of ``dtype`` with ``like``'s (empty) index; used for meta."""
    if is_cudf(like):
        return _cudf_empty_column(dtype, like)
    return pd.Series([], index=like.index[:0], dtype=dtype)


def assign_columns(frame: Any, columns: dict[str, Any]) -> Any:
    """A shallow copy of ``frame`` with ``columns`` added at the end, in order."""
    out = frame.copy(deep=False)
    for name, column in columns.items():
        out[name] = column
    return out


# ---------------------------------------------------------------------------- cuDF
# Kept thin on purpose: these are the only lines that need RAPIDS. They cannot run on a
# machine without cuDF; the CPU path above is what the test suite checks line by line.


def _cudf_from_arrow(array: pa.Array, like: Any) -> Any:
    import cudf

    series = cudf.Series.from_arrow(array)
    series.index = like.index
    return series


def _cudf_empty_column(dtype: Any, like: Any) -> Any:
    import cudf

    if dtype == SCORE_LIST_DTYPE:
        dtype = cudf.ListDtype("float32")
    elif dtype == LABEL_LIST_DTYPE:
        dtype = cudf.ListDtype("str")
    elif dtype == LABEL_DTYPE:
        dtype = "str"
    elif str(dtype) == "Int64":
        dtype = "int64"
    return cudf.Series([], dtype=dtype, index=like.index[:0])


def _cudf_label_column(names: tuple[str, ...], codes: torch.Tensor, valid: np.ndarray, like: Any) -> Any:
    import cudf
    import cupy

    categories = cudf.Series(list(names), dtype="str")
    picked = categories.take(cupy.from_dlpack(codes.detach().contiguous()).astype("int32"))
    picked.index = like.index
    return picked.where(cudf.Series(cupy.asarray(valid), index=like.index))


def _cudf_float_list_column(matrix: torch.Tensor, valid: np.ndarray, like: Any) -> Any:
    """list<float32> column made from device memory: offsets and values never leave the GPU."""
    import cudf
    import cupy

    values = cupy.from_dlpack(matrix.detach().to(torch.float32).contiguous()).reshape(-1)
    rows = len(valid)
    width = int(matrix.shape[1]) if matrix.ndim == 2 else 0
    offsets = cupy.arange(rows + 1, dtype=cupy.int32) * width
    if not valid.all():
        # Null rows need a validity mask; rare (null text), so take the simple route.
        return _cudf_from_arrow(float_list_column(matrix.cpu(), valid, pd.DataFrame(index=range(rows))).array.__arrow_array__(), like)
    try:
        import pylibcudf as plc

        column = plc.Column(
            plc.DataType(plc.TypeId.LIST),
            rows,
            None,
            None,
            0,
            0,
            [plc.Column.from_cuda_array_interface(offsets), plc.Column.from_cuda_array_interface(values)],
        )
        series = cudf.Series.from_pylibcudf(column)
    except Exception as error:  # an older/newer cuDF API: correct, but through the host
        logger.warning("Building the list column on the GPU failed (%s); copying through the host.", error)
        series = cudf.Series.from_arrow(
            float_list_column(matrix.cpu(), valid, pd.DataFrame(index=range(rows))).array.__arrow_array__()
        )
    series.index = like.index
    return series
