"""The only module that knows pandas/numpy from cuDF/cupy (the cuDF half is ``cudf_columns``).

Output columns are built with the partition's own backend: on pandas, numpy arrays and
Arrow ``list<float32>`` columns; on cuDF, device columns (see :mod:`.cudf_columns`). RAPIDS
is imported lazily, only when a cuDF frame actually arrives, so this package imports on
machines without it.

Missing values (rows whose text is null or not a string), the same on both backends and in
the dask ``meta``:

* float columns (a regression label, uncertainty scores, NVIDIA quality scores) are
  ``float32``/``float64`` holding **NaN**, not null: numpy dtypes on pandas, float columns
  with NaN values and no null mask on cuDF (built with ``nan_as_null=False``);
* integer columns are nullable ``Int64`` (pandas) / ``int64`` with a null mask (cuDF);
* label columns (strings) and list columns (scores, embeddings, multi-label labels) are
  **null** (``NaN`` in pandas' ``str`` dtype; no list at all in list columns).

:data:`MISSING_VALUE` records this contract; :func:`cudf_dtype_name` gives the cuDF dtype
of every pandas dtype this package writes, so meta and partitions agree on both backends.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from .errors import InputError

logger = logging.getLogger(__name__)

#: dtype of label columns: pandas' default string dtype (NaN for missing).
LABEL_DTYPE = pd.StringDtype(na_value=np.nan)
#: dtype of probability columns: one float32 per label, in id order.
SCORE_LIST_DTYPE = pd.ArrowDtype(pa.list_(pa.float32()))
#: dtype of a list of labels (multi-label predictions).
LABEL_LIST_DTYPE = pd.ArrowDtype(pa.list_(pa.string()))
#: What an invalid row holds, per kind of output column (see the module docstring).
MISSING_VALUE = {"float": "NaN", "int": "null", "label": "null", "list": "null"}
#: Most values one list column may hold in a partition: Arrow ``list`` and libcudf list
#: columns use 32-bit offsets (libcudf's ``size_type``), so ``rows x width`` must stay below
#: 2**31. A module attribute so tests can lower it.
MAX_LIST_VALUES = 2**31 - 1
#: Backends a caller may ask for (the CLI's ``--backend``).
BACKENDS = ("auto", "pandas", "cudf")


def is_cudf(frame: Any) -> bool:
    """True for cuDF DataFrames/Series, checked without importing cuDF."""
    return type(frame).__module__.split(".")[0] == "cudf"


def is_dask(frame: Any) -> bool:
    """True for dask DataFrames (dask-expr collections)."""
    return hasattr(frame, "map_partitions") and hasattr(frame, "_meta")


def column_values(series: Any) -> list[Any]:
    """A column's values as Python objects on the host (lists for list columns, None/NaN for nulls)."""
    if is_cudf(series):
        return series.to_arrow().to_pylist()
    if isinstance(series.dtype, pd.ArrowDtype):
        return pa.array(series).to_pylist()
    return series.tolist()


def text_values(series: Any) -> list[Any]:
    """The text column as Python objects on the host (tokenizers run on the CPU)."""
    return column_values(series)


def tensor_on_device(values: Any) -> bool:
    """True when ``values`` is a torch tensor in CUDA memory: only then can cupy take it
    through DLPack. Host tensors and numpy arrays go through the host (``cupy.asarray``);
    ``cupy.from_dlpack`` on a CPU tensor raises ``TypeError``.
    """
    return isinstance(values, torch.Tensor) and values.device.type == "cuda"


def check_list_size(rows: int, width: int) -> None:
    """Refuse a ``list`` column of ``rows x width`` values that 32-bit offsets cannot address."""
    if rows * width > MAX_LIST_VALUES:
        raise InputError(
            f"A list column of {rows:,} rows x {width:,} values ({rows * width:,}) exceeds the "
            f"{MAX_LIST_VALUES:,} values that one partition's list column can hold (32-bit "
            f"offsets). Use smaller partitions, e.g. ddf.repartition(npartitions=ddf.npartitions "
            f"* {-(-rows * width // MAX_LIST_VALUES) + 1})."
        )


def cudf_dtype_name(dtype: Any) -> str:
    """The cuDF dtype (as a name) that stands for a pandas dtype of this package's outputs.

    ``list<float32>``/``list<str>`` for list columns, ``str`` for labels, ``int64`` for
    nullable ``Int64``; numpy dtypes keep their name (floats keep NaN, see the module docstring).
    """
    if dtype == SCORE_LIST_DTYPE:
        return "list<float32>"
    if dtype == LABEL_LIST_DTYPE:
        return "list<str>"
    if dtype == LABEL_DTYPE or isinstance(dtype, pd.StringDtype):
        return "str"
    if str(dtype) == "Int64":
        return "int64"
    return np.dtype(dtype).name


# ---------------------------------------------------------------------------- columns


def host_array(array: torch.Tensor | np.ndarray) -> np.ndarray:
    """A numpy array on the host (half-precision tensors widened to float32)."""
    if isinstance(array, torch.Tensor):
        array = array.detach().to("cpu")
        if array.dtype in (torch.bfloat16, torch.float16):
            array = array.float()
        return array.numpy()
    return np.asarray(array)


def label_column(names: tuple[str, ...], codes: torch.Tensor, valid: np.ndarray, like: Any) -> Any:
    """A string column: ``names[codes[i]]``, null where ``valid`` is False."""
    if is_cudf(like):
        from . import cudf_columns

        return cudf_columns.label_column(names, codes, valid, like)
    picked = np.asarray(names, dtype=object)[host_array(codes)] if len(codes) else np.zeros(0, dtype=object)
    picked = picked.copy()
    picked[~valid] = np.nan
    return pd.Series(picked, index=like.index, dtype=LABEL_DTYPE)


def float_list_column(matrix: torch.Tensor, valid: np.ndarray, like: Any) -> Any:
    """A ``list<float32>`` column with one row of ``matrix`` per row, null where invalid."""
    rows = len(valid)
    width = int(matrix.shape[1]) if matrix.ndim == 2 else 0
    check_list_size(rows, width)
    if is_cudf(like):
        from . import cudf_columns

        return cudf_columns.float_list_column(matrix, valid, like)
    values = np.ascontiguousarray(host_array(matrix).astype(np.float32, copy=False)).reshape(-1)
    return pd.Series(pd.arrays.ArrowExtensionArray(host_list_array(values, rows, width, valid)), index=like.index)


def host_list_array(values: np.ndarray, rows: int, width: int, valid: np.ndarray) -> pa.ListArray:
    """An Arrow ``list`` array of ``rows`` lists of ``width`` values each (row-major ``values``)."""
    check_list_size(rows, width)
    offsets = pa.array((np.arange(rows + 1, dtype=np.int64) * width).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values), mask=pa.array(~np.asarray(valid, dtype=bool)))


def label_list_column(names: tuple[str, ...], chosen: torch.Tensor, valid: np.ndarray, like: Any) -> Any:
    """A ``list<string>`` column: the names where ``chosen[i, j]`` is True, null where invalid."""
    if is_cudf(like):
        from . import cudf_columns

        return cudf_columns.label_list_column(names, chosen, valid, like)
    return pd.Series(pd.arrays.ArrowExtensionArray(host_label_lists(names, chosen, valid)), index=like.index)


def host_label_lists(names: tuple[str, ...], chosen: Any, valid: np.ndarray) -> pa.ListArray:
    """The multi-label lists of :func:`label_list_column` as an Arrow array on the host."""
    flags = host_array(chosen).astype(bool)
    lists = [[names[j] for j in np.flatnonzero(row)] if ok else None for row, ok in zip(flags, valid)]
    return pa.array(lists, type=pa.list_(pa.string()))


def float_column(values: torch.Tensor, valid: np.ndarray, like: Any, dtype: str = "float32") -> Any:
    """A float column, NaN (not null) where invalid, on both backends."""
    if is_cudf(like):
        from . import cudf_columns

        return cudf_columns.float_column(values, valid, like, dtype)
    data = host_array(values).astype(dtype, copy=True)
    data[~valid] = np.nan
    return pd.Series(data, index=like.index, dtype=dtype)


def int_column(values: torch.Tensor, valid: np.ndarray, like: Any) -> Any:
    """A nullable Int64 column (null where invalid)."""
    if is_cudf(like):
        from . import cudf_columns

        return cudf_columns.int_column(values, valid, like)
    data = host_array(values).astype(np.int64)
    return pd.Series(pd.arrays.IntegerArray(data, ~valid), index=like.index)


def empty_column(dtype: Any, like: Any) -> Any:
    """A zero-row column of ``dtype`` with ``like``'s (empty) index; used for meta."""
    if is_cudf(like):
        from . import cudf_columns

        return cudf_columns.empty_column(cudf_dtype_name(dtype), like)
    return pd.Series([], index=like.index[:0], dtype=dtype)


def assign_columns(frame: Any, columns: dict[str, Any]) -> Any:
    """A shallow copy of ``frame`` with ``columns`` added at the end, in order."""
    out = frame.copy(deep=False)
    for name, column in columns.items():
        out[name] = column
    return out


def labels_mask(labels: Any, wanted: Sequence[str], multi_label: bool) -> Any:
    """Boolean mask of rows whose label is in ``wanted`` (multi-label: any of its labels).

    Null rows never match. On cuDF the mask is computed on the device.
    """
    if is_cudf(labels):
        from . import cudf_columns

        return cudf_columns.labels_mask(labels, wanted, multi_label)
    if multi_label:
        keep = set(wanted)
        values = column_values(labels)
        return np.fromiter(
            (isinstance(value, (list, tuple, np.ndarray)) and bool(keep.intersection(value)) for value in values),
            bool,
            len(values),
        )
    return np.asarray(labels.isin(list(wanted)).fillna(False), dtype=bool)


# ---------------------------------------------------------------------------- whole frames
# Backend-neutral steps for code that handles computed partitions (the CLI's writer).


def concat_frames(parts: Sequence[Any]) -> Any:
    """Row-wise concatenation of pandas or cuDF partitions (one backend), in order."""
    parts = list(parts)
    if not parts:
        raise InputError("concat_frames() needs at least one frame.")
    if len(parts) == 1:
        return parts[0]
    if is_cudf(parts[0]):
        import cudf

        return cudf.concat(parts)
    return pd.concat(parts)


def to_pandas_frame(frame: Any) -> pd.DataFrame:
    """``frame`` as pandas with this package's output dtypes (list columns as Arrow lists)."""
    if is_cudf(frame):
        from . import cudf_columns

        return cudf_columns.to_pandas_frame(frame)
    return frame


def to_arrow_table(frame: Any, preserve_index: bool = True) -> pa.Table:
    """``frame`` (pandas or cuDF) as an Arrow table on the host."""
    if is_cudf(frame):
        return frame.to_arrow(preserve_index=preserve_index)
    return pa.Table.from_pandas(frame, preserve_index=preserve_index)


def on_backend(frame: Any, backend: str) -> Any:
    """A dask (or pandas/cuDF) frame with ``backend``'s partitions (``pandas`` or ``cudf``).

    Files are read on the host (so reader options such as ``encoding_errors`` apply exactly
    as for pandas) and moved to cuDF with ``to_backend``: the text goes to the tokenizer on
    the CPU anyway, and the output columns are then built on the GPU.
    """
    if backend not in ("pandas", "cudf"):
        raise InputError(f"backend must be 'pandas' or 'cudf' here, got {backend!r}.")
    if is_cudf(getattr(frame, "_meta", frame)) == (backend == "cudf"):
        return frame
    if is_dask(frame):
        return frame.to_backend(backend)
    if backend == "cudf":
        import cudf

        return cudf.from_pandas(frame)
    return to_pandas_frame(frame)


def check_backend(requested: str, *, cudf_installed: bool | None = None) -> None:
    """Refuse an unknown backend, or ``cudf`` where cuDF is not installed (before a cluster starts)."""
    if requested not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {requested!r}.")
    installed = cudf_available() if cudf_installed is None else cudf_installed
    if requested == "cudf" and not installed:
        raise InputError(
            "backend 'cudf' needs RAPIDS cuDF and dask-cudf: pip install 'nemo_cls_dask[gpu-cu13]' "
            "(or [gpu-cu12]); or choose --backend pandas."
        )


def resolve_backend(requested: str, *, gpu_cluster: bool, cudf_installed: bool | None = None) -> str:
    """The partition backend for ``requested`` (``auto``, ``pandas`` or ``cudf``).

    ``auto`` is cuDF only on a GPU cluster with cuDF (and dask-cudf) installed, else pandas.
    ``cudf`` without them raises a clear error (:func:`check_backend` says so before a
    cluster starts).
    """
    installed = cudf_available() if cudf_installed is None else cudf_installed
    check_backend(requested, cudf_installed=installed)
    if requested == "pandas":
        return "pandas"
    if requested == "cudf":
        if not gpu_cluster:
            raise InputError("backend 'cudf' needs a GPU cluster (workers with CUDA GPUs); or choose --backend pandas.")
        return "cudf"
    return "cudf" if gpu_cluster and installed else "pandas"


def cudf_available() -> bool:
    """True when cuDF and dask-cudf can be imported (without using a GPU)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("cudf", "dask_cudf"))
