"""cuDF output columns, built on the GPU; the only module that imports RAPIDS.

:mod:`.frames` calls these for cuDF partitions. Tensors in CUDA memory reach cupy through
DLPack with no copy; tensors on the host (a model on the CPU, ``device="cpu"``, a CPU-only
torch) are routed through the host with ``cupy.asarray`` (:func:`device_array`), since
``cupy.from_dlpack`` refuses CPU tensors. List columns with null rows keep their values on
the device and get a validity mask. Where a pylibcudf call is missing (another RAPIDS
release), a column falls back to the host route with a warning: slower, same values.

Nothing here runs on a machine without RAPIDS; ``tests/test_cudf.py`` checks each builder
against the pandas path on a GPU with RAPIDS, and ``tests/test_backends.py`` checks the
routing decisions on the CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from . import frames

logger = logging.getLogger(__name__)


def device_array(values: Any) -> Any:
    """A cupy array of ``values``: zero-copy from a CUDA tensor, copied up from the host otherwise."""
    import cupy

    if frames.tensor_on_device(values):
        tensor = values.detach()
        if tensor.dtype in (torch.bfloat16, torch.float16):
            tensor = tensor.float()  # cupy has no bfloat16
        return cupy.from_dlpack(tensor.contiguous())
    return cupy.asarray(frames.host_array(values))


def from_arrow(array: pa.Array, like: Any) -> Any:
    """A cuDF Series of a host Arrow array, on ``like``'s index."""
    import cudf

    series = cudf.Series.from_arrow(array)
    series.index = like.index
    return series


def empty_column(dtype_name: str, like: Any) -> Any:
    """A zero-row cuDF column for a :func:`frames.cudf_dtype_name`."""
    import cudf

    dtype: Any = dtype_name
    if dtype_name.startswith("list<"):
        dtype = cudf.ListDtype(dtype_name[len("list<"):-1])
    return cudf.Series([], dtype=dtype, index=like.index[:0])


def label_column(names: tuple[str, ...], codes: torch.Tensor, valid: np.ndarray, like: Any) -> Any:
    import cudf
    import cupy

    categories = cudf.Series(list(names), dtype="str")
    picked = categories.take(device_array(codes).astype("int32"))
    picked.index = like.index
    return picked.where(cudf.Series(cupy.asarray(valid), index=like.index))


def float_column(values: torch.Tensor, valid: np.ndarray, like: Any, dtype: str) -> Any:
    """Float column holding NaN (not null) for invalid rows, as on pandas.

    ``cudf.Series`` turns NaN into null by default (``nan_as_null``), hence the explicit False.
    """
    import cudf
    import cupy

    data = device_array(values).astype(dtype)
    data[cupy.asarray(~valid)] = cupy.nan
    return cudf.Series(data, index=like.index, nan_as_null=False)


def int_column(values: torch.Tensor, valid: np.ndarray, like: Any) -> Any:
    import cudf
    import cupy

    series = cudf.Series(device_array(values).astype("int64"), index=like.index)
    return series.where(cudf.Series(cupy.asarray(valid), index=like.index))


def float_list_column(matrix: torch.Tensor, valid: np.ndarray, like: Any) -> Any:
    """``list<float32>`` made on the device: values, offsets and validity mask never leave it."""
    rows = len(valid)
    width = int(matrix.shape[1]) if matrix.ndim == 2 else 0
    try:
        import cupy

        keep = cupy.asarray(valid)
        values = device_array(matrix).astype(cupy.float32).reshape(rows, width)
        if not valid.all():
            values = values[keep]  # null rows hold no values (no "non-empty nulls")
        counts = keep.astype(cupy.int32) * width
        series = _list_series(_offsets(counts), _plc_column(values.reshape(-1)), valid)
    except Exception as error:  # noqa: BLE001 - another RAPIDS API: same values via the host
        logger.warning("Building a list column on the GPU failed (%s); copying through the host.", error)
        host = frames.host_array(matrix).astype(np.float32).reshape(-1)
        return from_arrow(frames.host_list_array(host, rows, width, valid), like)
    series.index = like.index
    return series


def label_list_column(names: tuple[str, ...], chosen: torch.Tensor, valid: np.ndarray, like: Any) -> Any:
    """``list<str>`` made on the device: per row the names of the chosen labels, in label order."""
    try:
        import cupy
        import pylibcudf as plc

        flags = device_array(chosen).astype(cupy.bool_)
        flags[~cupy.asarray(valid)] = False
        positions = (cupy.flatnonzero(flags) % max(len(names), 1)).astype(cupy.int32)
        table = plc.Table([plc.Column.from_arrow(pa.array(list(names), type=pa.string()))])
        picked = plc.copying.gather(table, _plc_column(positions), plc.copying.OutOfBoundsPolicy.DONT_CHECK)
        series = _list_series(_offsets(flags.sum(axis=1, dtype=cupy.int32)), picked.columns()[0], valid)
    except Exception as error:  # noqa: BLE001 - another RAPIDS API: same values via the host
        logger.warning("Building a label list column on the GPU failed (%s); copying through the host.", error)
        return from_arrow(frames.host_label_lists(names, chosen, valid), like)
    series.index = like.index
    return series


def labels_mask(labels: Any, wanted: Sequence[str], multi_label: bool) -> Any:
    """Device boolean mask: the row's label (multi-label: any of its labels) is wanted."""
    if not multi_label:
        return labels.isin(list(wanted)).fillna(False)
    mask = None
    for name in wanted:
        hit = labels.list.contains(name)
        mask = hit if mask is None else mask | hit
    if mask is None:
        import cudf

        return cudf.Series(np.zeros(len(labels), dtype=bool), index=labels.index)
    return mask.fillna(False)


def to_pandas_frame(frame: Any) -> pd.DataFrame:
    """A cuDF frame on the host with the pandas path's dtypes (Arrow lists, nullable Int64)."""
    import cudf

    out = frame.to_pandas()
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, cudf.ListDtype):
            out[name] = pd.Series(pd.arrays.ArrowExtensionArray(column.to_arrow()), index=out.index)
        elif getattr(column.dtype, "kind", "") in ("i", "u") and column.null_count:
            out[name] = column.to_pandas(nullable=True).set_axis(out.index)
        elif column.dtype == "object" or str(column.dtype) == "str":
            out[name] = out[name].astype(frames.LABEL_DTYPE)
    return out


# ---------------------------------------------------------------------------- pylibcudf


def _offsets(counts: Any) -> Any:
    """int32 list offsets ``[0, c0, c0+c1, ...]`` on the device from per-row counts."""
    import cupy

    offsets = cupy.zeros(len(counts) + 1, dtype=cupy.int32)
    cupy.cumsum(counts, out=offsets[1:])
    return offsets


def _plc_column(array: Any) -> Any:
    import pylibcudf as plc

    return plc.Column.from_cuda_array_interface(array)


def _list_series(offsets: Any, child: Any, valid: np.ndarray) -> Any:
    """A cuDF list Series from device offsets, a pylibcudf child column and row validity."""
    import cudf
    import cupy
    import pylibcudf as plc

    rows = len(valid)
    mask, null_count = None, 0
    if not valid.all():
        mask, null_count = plc.transform.bools_to_mask(_plc_column(cupy.asarray(valid)))
    column = plc.Column(plc.DataType(plc.TypeId.LIST), rows, None, mask, null_count, 0, [_plc_column(offsets), child])
    return cudf.Series.from_pylibcudf(column)
