"""Output files read back with plain pandas and dask, list columns included."""

import dask.dataframe as dd
import numpy as np
import pandas as pd

from nemo_cls_dask import frames
from nemo_cls_dask.io import write_atomic


def test_parquet_with_probability_lists_reads_back(tmp_path):
    frame = pd.DataFrame({"text": ["a", "b", "c"]}, index=[7, 7, 1])
    valid = np.array([True, False, True])
    frame["prob"] = frames.float_list_column(np.arange(9, dtype=np.float32).reshape(3, 3), valid, frame)
    target = write_atomic(frame, tmp_path / "out.parquet", "parquet")
    for back in (pd.read_parquet(target), dd.read_parquet(target).compute()):
        assert back.index.tolist() == [7, 7, 1]
        assert back["text"].tolist() == ["a", "b", "c"]
        assert list(back["prob"].iloc[0]) == [0.0, 1.0, 2.0]
        assert back["prob"].iloc[1] is None
    typed = pd.read_parquet(target, dtype_backend="pyarrow")
    assert typed["prob"].tolist()[2] == [6.0, 7.0, 8.0]
