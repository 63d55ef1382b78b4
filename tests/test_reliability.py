"""Determinism across partitioning, batch composition and workers; surviving a killed worker.

Tolerances (documented):

* fp32, same batch composition (e.g. ``max_batch_rows=1``, or the same partitions and
  settings): probabilities are bit-for-bit equal;
* fp32, different batch compositions (other partitions, ``batch_tokens``,
  ``sort_by_length``): probabilities within ``FP32_ATOL = 1e-5`` (padding changes the
  shapes of the matmuls, so the summation order changes), labels equal except where the
  top two probabilities are within ``2 * FP32_ATOL`` (``tests/tolerances.py``);
* bf16 autocast on CPU: probabilities within ``BF16_ATOL = 0.1`` of fp32 (the tiny random
  test models have large logits), labels equal on rows whose fp32 top-two margin is at
  least ``BF16_MARGIN = 0.2``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings

import cloudpickle
import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from nemo_cls_dask import DistributedDataClassifier, get_client
from tolerances import assert_labels_agree, score_rows

FP32_ATOL = 1e-5
BF16_ATOL = 0.1
BF16_MARGIN = 0.2


def scores(series: pd.Series) -> np.ndarray:
    return np.array([[np.nan] * 3 if row is None else row for row in pa.array(series).to_pylist()], dtype=np.float64)


@pytest.fixture(scope="module")
def frame(varied_texts) -> pd.DataFrame:
    texts = (list(varied_texts) * 2)[:60] + [None, ""]
    n = len(texts)
    return pd.DataFrame({"text": pd.Series(texts, dtype=object), "n": np.arange(n)}).set_axis(
        pd.Index([(i * 7) % 13 for i in range(n)])
    )


def run(frame, checkpoint, npartitions=1, **options):
    classifier = DistributedDataClassifier(model_identifier=checkpoint, score_field="p", autocast=False, **options)
    if npartitions == 0:
        return classifier(frame)
    return classifier(dd.from_pandas(frame, npartitions=npartitions, sort=False)).compute(scheduler="sync")


def test_same_batches_give_identical_probabilities(frame, head_checkpoint):
    one_by_one = [run(frame, head_checkpoint, n, max_batch_rows=1) for n in (0, 1, 4, 9)]
    reversed_frame = run(frame.iloc[::-1], head_checkpoint, 3, max_batch_rows=1).iloc[::-1]
    for other in one_by_one[1:] + [reversed_frame]:
        assert other["preds"].tolist() == one_by_one[0]["preds"].tolist()
        np.testing.assert_array_equal(scores(other["p"]), scores(one_by_one[0]["p"]))
    again = run(frame, head_checkpoint, 3, batch_tokens=700)
    np.testing.assert_array_equal(scores(again["p"]), scores(run(frame, head_checkpoint, 3, batch_tokens=700)["p"]))


@pytest.mark.parametrize(
    ("npartitions", "options"),
    [(1, {}), (5, {}), (1, {"batch_tokens": 64}), (3, {"batch_tokens": 4096}), (2, {"sort_by_length": False}),
     (7, {"sort_by_length": False, "batch_tokens": 256}), (1, {"max_batch_rows": 2}), (4, {"padding_side": "left"})],
)
@pytest.mark.parametrize("layout", ["head", "hf"])
def test_labels_equal_across_batch_compositions(layout, npartitions, options, frame, head_checkpoint, hf_checkpoint):
    checkpoint = head_checkpoint if layout == "head" else hf_checkpoint
    reference = run(frame, checkpoint, 0, max_batch_rows=1)  # one row per forward pass
    got = run(frame, checkpoint, npartitions, **options)
    assert got.index.equals(frame.index) and got["n"].tolist() == frame["n"].tolist()
    assert_labels_agree(got["preds"], reference["preds"], score_rows(reference["p"]), atol=FP32_ATOL)
    np.testing.assert_allclose(scores(got["p"]), scores(reference["p"]), rtol=0, atol=FP32_ATOL)


def test_bf16_autocast_agrees_on_clear_margin_rows(frame, hf_checkpoint):
    fp32 = run(frame, hf_checkpoint, 2)
    bf16 = DistributedDataClassifier(model_identifier=hf_checkpoint, score_field="p", autocast="bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # slow-bf16-CPU warning (emitted once per process)
        low = bf16(frame)
    p32, p16 = scores(fp32["p"]), scores(low["p"])
    valid = ~np.isnan(p32).any(axis=1)
    assert np.array_equal(valid, ~np.isnan(p16).any(axis=1))
    np.testing.assert_allclose(p16[valid], p32[valid], rtol=0, atol=BF16_ATOL)
    top2 = np.sort(p32[valid], axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) >= BF16_MARGIN
    assert clear.sum() >= valid.sum() // 2, "the check needs clear-margin rows"
    labels32 = fp32["preds"].to_numpy()[valid][clear]
    labels16 = low["preds"].to_numpy()[valid][clear]
    assert labels32.tolist() == labels16.tolist()


# --------------------------------------------------------------------------- worker failure


def slow_classify(part: pd.DataFrame, classifier: DistributedDataClassifier, delay: float) -> pd.DataFrame:
    """The real operator on one partition, after a pause (so a worker can die mid-job)."""
    time.sleep(delay)
    return classifier(part)


@pytest.fixture(scope="module")
def cluster_client():
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    client = get_client(n_workers=2, device="cpu", threads_per_worker=1)
    try:
        client.wait_for_workers(2, timeout=120)
        yield client
    finally:
        cluster = client.cluster
        client.close()
        if cluster is not None:
            cluster.close()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.mark.slow
def test_killed_worker_loses_and_duplicates_nothing(cluster_client, frame, head_checkpoint):
    client = cluster_client
    classifier = DistributedDataClassifier(model_identifier=head_checkpoint, score_field="p", batch_tokens=256, autocast=False)
    big = pd.concat([frame] * 4)
    big["row"] = np.arange(len(big))
    ddf = dd.from_pandas(big, npartitions=24, sort=False)
    meta = classifier(ddf)._meta

    def job(delay):
        return ddf.map_partitions(slow_classify, classifier, delay, meta=meta)

    undisturbed = client.compute(job(0.0)).result()
    # Worker count does not change labels: a 2-process cluster equals in-process pandas.
    in_process = classifier(big)
    assert undisturbed["preds"].tolist() == in_process["preds"].tolist()
    np.testing.assert_allclose(scores(undisturbed["p"]), scores(in_process["p"]), atol=FP32_ATOL, rtol=0)

    pids_before = client.run(os.getpid)
    future = client.compute(job(0.4))
    deadline = time.time() + 60
    while not any(state == "memory" for state in client.run_on_scheduler(_task_states).values()) and time.time() < deadline:
        time.sleep(0.1)
    victim = sorted(pids_before.values())[0]
    assert not future.done(), "the job finished before the worker could be killed; make it slower"
    os.kill(victim, signal.SIGKILL)
    disturbed = future.result(timeout=300)

    client.wait_for_workers(2, timeout=120)
    pids_after = client.run(os.getpid)
    assert victim not in pids_after.values()  # the nanny started a new process
    assert sorted(disturbed["row"].tolist()) == list(range(len(big)))  # every row exactly once
    assert disturbed.index.equals(big.index) and disturbed["row"].tolist() == big["row"].tolist()
    assert disturbed["preds"].tolist() == undisturbed["preds"].tolist()
    np.testing.assert_array_equal(scores(disturbed["p"]), scores(undisturbed["p"]))  # same partitions: same batches


def _task_states(dask_scheduler=None):
    return {str(key): task.state for key, task in dask_scheduler.tasks.items() if "slow_classify" in str(key)}
