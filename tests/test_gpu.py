"""The operator on a CUDA GPU (marker ``gpu``; needs torch with CUDA only, no RAPIDS).

Run on a GPU machine with ``python3 -m pytest -m gpu tests/test_gpu.py`` or, on a machine
without dask installed, through ``ci/gpu-proof run``. Every test skips without CUDA.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from nemo_cls_dask import DistributedDataClassifier
from nemo_cls_dask.batching import forward_with_oom_split
from nemo_cls_dask.engine import engine_stats, reset_engine_stats

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]

#: fp32 on the GPU vs fp32 on the CPU: the same math in differently ordered reductions
#: (cuBLAS vs oneDNN GEMMs, fused softmax); 1e-4 on probabilities holds for the tiny model.
FP32_ATOL = 1e-4
#: Autocast vs fp32, per precision: (bound on the 90th percentile of |probability
#: difference|, fp32 top-2 margin above which labels must agree). bf16 keeps 8 mantissa bits,
#: fp16 11; the tiny random model's std-1 head gives large logits, so rounding moves rows
#: near a tie a lot. Measured with CPU autocast on this model: bf16 95th percentile 0.046
#: (max 0.23, labels differ only below a 0.07 margin), fp16 max 0.026.
AUTOCAST_BOUNDS = {"bf16": (0.1, 0.3), "fp16": (0.02, 0.1)}


def _probabilities(out: pd.DataFrame, column: str = "probs") -> np.ndarray:
    return np.stack([np.asarray(value, dtype=np.float64) for value in out[column]])


@pytest.fixture(scope="module")
def texts(varied_texts) -> list:
    return list(varied_texts) + [None, "", "short"]


def _run(checkpoint, texts, **options) -> pd.DataFrame:
    classifier = DistributedDataClassifier(model_identifier=checkpoint, score_field="probs", **options)
    return classifier(pd.DataFrame({"text": texts}))


def test_cuda_fp32_matches_the_cpu_reference(head_checkpoint, texts):
    cpu = _run(head_checkpoint, texts, device="cpu", autocast=False)
    gpu = _run(head_checkpoint, texts, device="cuda", autocast=False)
    valid = cpu["probs"].notna().to_numpy()
    assert valid.tolist()[-3:] == [False, False, True] and valid[:-3].all()  # None and "" have no output
    reference = _probabilities(cpu[valid])
    np.testing.assert_allclose(_probabilities(gpu[valid]), reference, rtol=0, atol=FP32_ATOL)
    top2 = np.sort(reference, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 10 * FP32_ATOL  # labels must agree unless the top two nearly tie
    assert clear.mean() > 0.5
    assert gpu["preds"][valid][clear].tolist() == cpu["preds"][valid][clear].tolist()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_stays_close_to_fp32(head_checkpoint, texts, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    reference = _run(head_checkpoint, texts, device="cuda", autocast=False)
    reset_engine_stats()
    cast = _run(head_checkpoint, texts, device="cuda", autocast=precision)
    valid = reference["probs"].notna().to_numpy()
    expected, got = _probabilities(reference[valid]), _probabilities(cast[valid])
    spread, clear_margin = AUTOCAST_BOUNDS[precision]
    assert np.quantile(np.abs(got - expected), 0.9) < spread
    assert not np.array_equal(got, expected)  # autocast really ran in lower precision
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > clear_margin
    assert cast["preds"][valid][clear].tolist() == reference["preds"][valid][clear].tolist()
    assert engine_stats()["rows"] == len(texts) - 2  # all but None and ""


def test_a_real_out_of_memory_error_halves_the_batch():
    """A forward that really allocates ``rows x chunk`` bytes on a capped GPU: 8 rows fail, 4 fit."""
    device = torch.device("cuda")
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    chunk_floats = int(free * 0.8 / 6) // 4  # 4 rows: ~53% of free memory; 8 rows: ~107%

    def forward(input_ids, attention_mask):
        block = torch.empty((input_ids.shape[0], chunk_floats), dtype=torch.float32, device=device)
        block[:, 0] = input_ids.float().sum(1)
        return block[:, :1].clone()

    ids = torch.arange(1, 25, device=device).reshape(8, 3)
    splits: list[int] = []
    try:
        out = forward_with_oom_split(forward, ids, torch.ones_like(ids), splits.append)
    finally:
        torch.cuda.empty_cache()
    assert splits == [8]
    torch.testing.assert_close(out, ids.float().sum(1, keepdim=True), rtol=0, atol=0)


def test_dlpack_hand_off_shares_device_memory():
    cupy = pytest.importorskip("cupy", reason="needs cupy for the DLPack hand-off")
    from nemo_cls_dask.cudf_columns import device_array

    tensor = torch.arange(12, dtype=torch.float32, device="cuda").reshape(3, 4)
    array = device_array(tensor)
    assert isinstance(array, cupy.ndarray)
    assert array.data.ptr == tensor.data_ptr()  # same device memory: no host round trip
    array[0, 0] = 42.0
    assert tensor[0, 0].item() == 42.0
    host = device_array(tensor.cpu())  # a host tensor is copied up, not handed over
    assert host.data.ptr != tensor.data_ptr() and float(host[0, 0]) == 42.0


def _one_worker_per_gpu_cluster(gpus: int):
    """dask-cuda's layout without dask-cuda: one single-threaded worker process per GPU,
    each seeing its own GPU first (``CUDA_VISIBLE_DEVICES`` rotated)."""
    from distributed import Nanny, Scheduler, SpecCluster

    workers = {}
    for index in range(gpus):
        order = [str((index + k) % gpus) for k in range(gpus)]
        workers[f"gpu-{index}"] = {
            "cls": Nanny,
            "options": {"nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": ",".join(order)}},
        }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0"}}
    return SpecCluster(workers=workers, scheduler=scheduler)


def test_cluster_with_one_worker_per_gpu_loads_the_model_once_per_worker(head_checkpoint, texts):
    dd = pytest.importorskip("dask.dataframe", reason="needs dask (ci/gpu-proof brings it)")
    from distributed import Client

    from nemo_cls_dask import load_counts

    gpus = torch.cuda.device_count()
    reference = _run(head_checkpoint, texts, device="cpu", autocast=False)
    classifier = DistributedDataClassifier(model_identifier=head_checkpoint, score_field="probs", autocast=False)
    source = dd.from_pandas(pd.DataFrame({"text": texts}), npartitions=3 * gpus)
    with _one_worker_per_gpu_cluster(gpus) as cluster, Client(cluster) as client:
        out = classifier(source).compute()
        counts = client.run(load_counts)
        seen = client.run(lambda: (__import__("os").environ["CUDA_VISIBLE_DEVICES"], __import__("torch").cuda.current_device()))
    assert out.index.tolist() == list(range(len(texts)))
    valid = reference["probs"].notna().to_numpy()
    np.testing.assert_allclose(_probabilities(out[valid]), _probabilities(reference[valid]), rtol=0, atol=FP32_ATOL)
    assert sorted(visible.split(",")[0] for visible, _ in seen.values()) == [str(i) for i in range(gpus)]
    busy = [sum(c.values()) for c in counts.values() if c]
    assert busy and all(loads == 1 for loads in busy)  # each worker that ran loaded the model once


def test_local_cuda_cluster_runs_the_operator(head_checkpoint, texts):
    pytest.importorskip("dask_cuda", reason="needs dask-cuda (ci/gpu-proof brings it)")
    dd = pytest.importorskip("dask.dataframe")
    from nemo_cls_dask import get_client

    reference = _run(head_checkpoint, texts, device="cpu", autocast=False)
    classifier = DistributedDataClassifier(model_identifier=head_checkpoint, score_field="probs", autocast=False)
    client = get_client(device="gpu")
    try:
        out = classifier(dd.from_pandas(pd.DataFrame({"text": texts}), npartitions=4)).compute()
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    valid = reference["probs"].notna().to_numpy()
    np.testing.assert_allclose(_probabilities(out[valid]), _probabilities(reference[valid]), rtol=0, atol=FP32_ATOL)
