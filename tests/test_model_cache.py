"""Workers cache models by content, not by folder: a model re-saved in place is never served stale."""

from __future__ import annotations

import shutil

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from nemo_cls_dask import DistributedDataClassifier, get_client
from nemo_cls_dask.testing import SAMPLE_TEXTS, make_hf_sequence_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    client = get_client(n_workers=1, device="cpu", threads_per_worker=1)
    cluster = client.cluster
    try:
        client.wait_for_workers(1, timeout=120)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _save(folder, labels, seed):
    shutil.rmtree(folder, ignore_errors=True)
    make_hf_sequence_checkpoint(folder, labels, arch="bert", seed=seed)


def _scores(series: pd.Series) -> np.ndarray:
    return np.array(pa.array(series).to_pylist(), dtype=float)


def test_a_model_resaved_in_place_is_reloaded_by_the_worker(client, tmp_path):
    folder = tmp_path / "model"
    frame = pd.DataFrame({"text": SAMPLE_TEXTS[:24]})
    ddf = dd.from_pandas(frame, npartitions=2)

    def on_cluster(**options):
        return DistributedDataClassifier(model_identifier=str(folder), score_field="p", **options)(ddf).compute()

    _save(folder, ["cat", "dog"], seed=1)
    first = on_cluster()
    assert set(first["preds"]) <= {"cat", "dog"}

    # New labels in the same folder: the worker must not answer with the old model.
    _save(folder, ["red", "green", "blue"], seed=2)
    expected = DistributedDataClassifier(model_identifier=str(folder), score_field="p")(frame)  # in this process
    second = on_cluster()
    assert second["preds"].tolist() == expected["preds"].tolist()
    # Same process kind, different batching across partitions: fp32 within round-off.
    np.testing.assert_allclose(_scores(second["p"]), _scores(expected["p"]), rtol=1e-5, atol=1e-6)
    red = int((expected["preds"] == "red").sum())
    assert 0 < red < len(frame)  # filter_by on a label only the new model has keeps its rows
    assert len(on_cluster(filter_by=["red"])) == red

    # Same labels and shapes, new weights (header and config unchanged): reloaded too.
    _save(folder, ["red", "green", "blue"], seed=3)
    expected = DistributedDataClassifier(model_identifier=str(folder), score_field="p")(frame)
    third = on_cluster()
    np.testing.assert_allclose(_scores(third["p"]), _scores(expected["p"]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(_scores(third["p"]), _scores(second["p"]), atol=1e-3)

    loads = client.run(lambda: __import__("nemo_cls_dask").load_counts())
    assert list(loads.values())[0][str(folder)] == 3  # one worker, three versions
