"""On a real process-based ``LocalCluster``: models load once per worker, weights stay out of the graph."""

from __future__ import annotations

import pickle

import cloudpickle
import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import nemo_cls_dask
from nemo_cls_dask import DistributedDataClassifier, classify, get_client
from tolerances import assert_labels_agree, score_rows

pytestmark = pytest.mark.slow

NPARTITIONS = 8


@pytest.fixture(scope="module")
def client():
    client = get_client(n_workers=2, device="cpu", threads_per_worker=1)
    cluster = client.cluster
    try:
        client.wait_for_workers(2, timeout=120)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@pytest.fixture(scope="module")
def frame(varied_texts) -> pd.DataFrame:
    texts = (list(varied_texts) * 2)[:96] + [None]
    n = len(texts)
    return pd.DataFrame(
        {"text": np.array(texts, dtype=object), "n": np.arange(n), "x": np.linspace(0, 1, n)},
        index=pd.Index([f"row-{(i * 13) % n}" for i in range(n)]),
    )


def _scores(series: pd.Series) -> np.ndarray:
    return np.array([np.nan * np.ones(3) if row is None else row for row in pa.array(series).to_pylist()], dtype=float)


def test_cluster_is_process_based(client):
    info = client.scheduler_info()
    assert len(info["workers"]) == 2
    pids = client.run(lambda: __import__("os").getpid())
    assert len(set(pids.values())) == 2 and __import__("os").getpid() not in pids.values()


def test_models_load_once_per_worker_and_results_match(client, frame, head_checkpoint, hf_checkpoint):
    quality = DistributedDataClassifier(
        model_identifier=head_checkpoint, label_field="quality", score_field="quality_prob", batch_tokens=1024
    )
    sentiment = DistributedDataClassifier(model_identifier=hf_checkpoint, label_field="sentiment", score_field="sentiment_prob")
    ddf = dd.from_pandas(frame, npartitions=NPARTITIONS, sort=False)
    assert ddf.npartitions == NPARTITIONS

    first = quality(ddf).compute()  # first call, first compute
    second_graph = classify(ddf, [quality, sentiment])  # second call: both models
    second = second_graph.compute()
    third = quality(ddf).compute()  # again: must reuse the loaded models

    counts = client.run(nemo_cls_dask.load_counts)
    print("load counts per worker:", counts)
    assert set(counts) == set(client.scheduler_info()["workers"])
    worked = {worker: c for worker, c in counts.items() if c}
    assert worked, "some worker must have run the model"
    for worker, per_model in worked.items():
        assert all(count == 1 for count in per_model.values()), (worker, per_model)
    assert any(str(head_checkpoint) in c for c in worked.values())
    assert any(str(hf_checkpoint) in c for c in worked.values())
    # In-process pandas result is the truth.
    expected = classify(frame, [quality, sentiment])
    for got in (first, third):
        assert got.index.equals(frame.index)
        # Other partitions make other batch shapes: equal up to fp32 rounding (labels: but for near-ties).
        assert_labels_agree(got["quality"], expected["quality"], score_rows(expected["quality_prob"]))
        np.testing.assert_allclose(_scores(got["quality_prob"]), _scores(expected["quality_prob"]), rtol=0, atol=1e-5)
    assert second.index.equals(frame.index)
    assert second.columns.tolist() == expected.columns.tolist()
    assert_labels_agree(second["sentiment"], expected["sentiment"], score_rows(expected["sentiment_prob"]))
    assert_labels_agree(second["quality"], expected["quality"], score_rows(expected["quality_prob"]))
    assert second_graph._meta.dtypes.to_dict() == second.dtypes.to_dict()
    assert second["quality"].isna().tolist() == [False] * (len(frame) - 1) + [True]


def test_filter_on_cluster_matches_pandas(client, frame, hf_checkpoint):
    classifier = DistributedDataClassifier(model_identifier=hf_checkpoint, label_field="s", filter_by=["positive"])
    got = classifier(dd.from_pandas(frame, npartitions=NPARTITIONS, sort=False)).compute()
    expected = classifier(frame)
    assert 0 < len(got) < len(frame)
    assert got.index.tolist() == expected.index.tolist()
    assert got["n"].tolist() == expected["n"].tolist()


def test_weights_stay_out_of_the_task_graph(client, frame, head_checkpoint):
    weights_size = (head_checkpoint / "model.safetensors").stat().st_size
    assert weights_size > 100_000, "the check needs weights clearly bigger than the limit"
    classifier = DistributedDataClassifier(model_identifier=head_checkpoint, score_field="p")
    classifier.describe()  # cached config info must not travel either
    assert len(cloudpickle.dumps(classifier)) < 50_000
    assert len(pickle.dumps(classifier)) < 50_000

    ddf = dd.from_pandas(frame, npartitions=NPARTITIONS, sort=False)
    out = classifier(ddf)
    # The classifier's tasks add little to the graph: identifiers, not tensors.
    before = len(cloudpickle.dumps(dict(ddf.__dask_graph__())))
    after = len(cloudpickle.dumps(dict(out.__dask_graph__())))
    assert after - before < 50_000
    # The partition function is imported by workers, not shipped by value.
    from nemo_cls_dask.classifiers.partition import classify_partition

    assert classify_partition.__module__ == "nemo_cls_dask.classifiers.partition"
    assert len(cloudpickle.dumps(classify_partition)) < 200
    with dask.config.set(scheduler=client):
        assert len(out.compute()) == len(frame)


def test_workers_keep_large_tensors_off_mmap(client, frame, head_checkpoint):
    """Dask's nanny fixes MALLOC_TRIM_THRESHOLD_ (freezing glibc's mmap threshold); loading a
    model in a worker raises the mmap threshold again (nemo_cls_dask.allocator)."""
    from nemo_cls_dask import allocator

    environments = client.run(lambda: "MALLOC_TRIM_THRESHOLD_" in __import__("os").environ)
    assert all(environments.values()), "dask's nanny is expected to set MALLOC_TRIM_THRESHOLD_"
    DistributedDataClassifier(model_identifier=head_checkpoint)(dd.from_pandas(frame, npartitions=NPARTITIONS)).compute()
    states = client.run(lambda: allocator._STATE["tuned"])
    loaded = client.run(lambda: bool(nemo_cls_dask.load_counts()))
    if allocator._mallopt() is None:
        pytest.skip("not glibc: mallopt is not available")
    assert all(states[worker] is True for worker, did_load in loaded.items() if did_load), states
