"""The dask graph of ``classify(ddf, classifiers)``, shaped so dask can prune it.

The models run on a projection of the frame holding only the text columns
(:func:`~nemo_cls_dask.classifiers.partition.output_partition`), and their columns are
then assigned back to the frame. dask-expr's optimizer sees through that:

* ``out[["package"]]`` and ``len(out)`` drop the model branch entirely (no model runs);
* ``out[["preds"]]`` reads only the text column (from parquet: only that column);
* the whole frame is read once: the two branches come from the same input expression.

``filter_by`` removes rows, so with it a last per-partition step keeps the wanted rows,
and every selection from the result runs the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from .. import frames
from .partition import filter_partition, output_partition

if TYPE_CHECKING:
    from .base import DistributedDataClassifier


def output_meta(like: Any, classifiers: Sequence[DistributedDataClassifier]) -> Any:
    """An empty frame with ``like``'s index and every classifier's output columns and dtypes."""
    empty = like.iloc[:0, :0]
    columns: dict[str, Any] = {}
    for classifier in classifiers:
        for name, dtype in classifier.all_output_dtypes(classifier.describe()).items():
            columns[name] = frames.empty_column(dtype, empty)
    return frames.assign_columns(empty, columns)


def classify_dask(ddf: Any, classifiers: Sequence[DistributedDataClassifier]) -> Any:
    """``ddf`` plus every classifier's columns, lazily (options already validated)."""
    classifiers = tuple(classifiers)
    text_columns = list(dict.fromkeys(classifier.text_field for classifier in classifiers))
    texts = ddf[text_columns]
    outputs = texts.map_partitions(
        partial(output_partition, classifiers=classifiers), meta=output_meta(texts._meta, classifiers)
    )
    out = ddf.assign(**{name: outputs[name] for name in outputs._meta.columns})
    if any(classifier.filter_by is not None for classifier in classifiers):
        problems = tuple(c.problem(c.describe()) if c.filter_by is not None else None for c in classifiers)
        out = out.map_partitions(partial(filter_partition, classifiers=classifiers, problems=problems), meta=out._meta)
    return out
