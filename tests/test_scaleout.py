"""Scale-out on a deployment started as users start one on several machines (issue 18).

A fixture starts ``dask scheduler --scheduler-file F`` and separate
``dask worker --scheduler-file F --nworkers 1 --nthreads 1`` processes on 127.0.0.1 (no
LocalCluster), then the Python API and the CLI run against it. Workers are real processes
that import the package from this checkout; models are the tiny checkpoints of
:mod:`nemo_cls_dask.testing`. Checked: every row comes back exactly once with the labels the
in-process run gives, each worker that ran a model loaded it exactly once
(:func:`nemo_cls_dask.load_counts` read on the workers with ``client.run``), and a worker
added in the middle of a job loads the model once and takes work while another retires
gracefully (``client.retire_workers``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client

import nemo_cls_dask
from nemo_cls_dask import DistributedDataClassifier

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 180  # seconds for a process to come up on a busy 2-core machine
N_ROWS = 96
N_PARTS = 24  # partitions of the mid-job test


class Deployment:
    """A scheduler and worker processes sharing one scheduler file; each started in its own
    process group so that stopping it also stops the nanny's worker process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.scheduler_file = folder / "scheduler.json"
        self.processes: list[subprocess.Popen] = []
        self.env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
                        NEMO_CLS_DASK_CPU_BF16="0",
                        # the package from this checkout, and this folder for the gated partition function
                        PYTHONPATH=os.pathsep.join([str(REPO), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))

    def _start(self, *args: str, log: str) -> subprocess.Popen:
        with open(self.folder / log, "ab") as out:
            process = subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=out, stderr=subprocess.STDOUT,
                                       env=self.env, cwd=self.folder, start_new_session=True)
        self.processes.append(process)
        return process

    def start_scheduler(self) -> None:
        self._start("scheduler", "--scheduler-file", str(self.scheduler_file), "--host", "127.0.0.1", "--port", "0",
                    "--dashboard-address", "127.0.0.1:0", log="scheduler.log")
        deadline = time.monotonic() + START_TIMEOUT
        while not self.scheduler_file.exists():
            if time.monotonic() > deadline or self.processes[0].poll() is not None:
                raise RuntimeError("the scheduler did not start:\n" + self.log("scheduler.log"))
            time.sleep(0.2)

    def start_worker(self, name: str) -> subprocess.Popen:
        return self._start("worker", "--scheduler-file", str(self.scheduler_file), "--nworkers", "1", "--nthreads", "1",
                           "--host", "127.0.0.1", "--no-dashboard", "--memory-limit", "2GiB", "--name", name,
                           log=f"{name}.log")

    def log(self, name: str) -> str:
        path = self.folder / name
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def wait_for_workers(client: Client, names: set[str]) -> dict[str, str]:
    """Wait until exactly the workers called ``names`` are connected; return name -> address."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        workers = {info["name"]: address for address, info in client.scheduler_info()["workers"].items()}
        if set(workers) == names:
            return workers
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers {sorted(workers)} connected, expected {sorted(names)}")
        time.sleep(0.2)


@pytest.fixture
def deployment(tmp_path):
    deployed = Deployment(tmp_path)
    try:
        deployed.start_scheduler()
        yield deployed
    finally:
        deployed.stop()


def rows(n: int = N_ROWS, texts: list[str] | None = None) -> pd.DataFrame:
    from nemo_cls_dask.testing import SAMPLE_TEXTS

    texts = texts or list(SAMPLE_TEXTS)
    return pd.DataFrame({"id": np.arange(n, dtype=np.int64), "text": [f"{texts[i % len(texts)]} ({i})" for i in range(n)]})


def loads_on(client: Client, model: Path) -> dict[str, int]:
    """Worker name -> how many times that worker process loaded ``model``."""
    names = {address: info["name"] for address, info in client.scheduler_info()["workers"].items()}
    counts = client.run(nemo_cls_dask.load_counts)
    return {names[address]: sum(n for key, n in per_model.items() if str(model) in key) for address, per_model in counts.items()}


def assert_every_row_once(result: pd.DataFrame, expected: pd.DataFrame, label: str) -> None:
    assert sorted(result["id"]) == list(range(len(expected))), "rows lost or repeated"
    merged = expected.merge(result[["id", label]], on="id", suffixes=("_expected", ""))
    assert (merged[label] == merged[f"{label}_expected"]).all()


def test_api_and_cli_on_scheduler_file_deployment(deployment, head_checkpoint, hf_checkpoint, tmp_path):
    for name in ("w1", "w2"):
        deployment.start_worker(name)
    frame = rows()
    with Client(scheduler_file=str(deployment.scheduler_file)) as client:
        wait_for_workers(client, {"w1", "w2"})
        assert len(set(client.run(os.getpid).values())) == 2  # two processes, neither this one

        # Python API: 16 partitions over two one-thread workers.
        quality = DistributedDataClassifier(model_identifier=head_checkpoint, label_field="quality", batch_tokens=1024)
        expected = quality(frame)  # in this process: the truth
        result = quality(dd.from_pandas(frame, npartitions=16, sort=False)).compute()
        assert_every_row_once(result, expected, "quality")
        result_again = quality(dd.from_pandas(frame, npartitions=16, sort=False)).compute()  # a second job
        assert_every_row_once(result_again, expected, "quality")
        assert loads_on(client, head_checkpoint) == {"w1": 1, "w2": 1}, "each worker loads the model once"

        # CLI: four input files, the same deployment through --scheduler-file.
        source = tmp_path / "in"
        source.mkdir()
        for part, chunk in enumerate(np.array_split(np.arange(N_ROWS), 4)):
            frame.iloc[chunk].to_parquet(source / f"part-{part}.parquet", index=False)
        completed = subprocess.run(
            [sys.executable, "-m", "nemo_cls_dask", "classify", str(source), str(tmp_path / "out"),
             "--model", str(hf_checkpoint), "--label-field", "sentiment", "--scheduler-file", str(deployment.scheduler_file)],
            capture_output=True, text=True, env=deployment.env, cwd=REPO, timeout=600,
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr
        written = pd.concat(pd.read_parquet(path) for path in sorted((tmp_path / "out").glob("*.parquet")))
        sentiment = DistributedDataClassifier(model_identifier=hf_checkpoint, label_field="sentiment")
        assert_every_row_once(written, sentiment(frame), "sentiment")
        hf_loads = loads_on(client, hf_checkpoint)
        assert set(hf_loads.values()) <= {0, 1} and sum(hf_loads.values()) >= 1, hf_loads
        # The CLI left the user's deployment running.
        assert set(wait_for_workers(client, {"w1", "w2"})) == {"w1", "w2"}


def gated_partition(index: int, frame: pd.DataFrame, gate: str) -> pd.DataFrame:
    """Partition ``index`` of ``frame``, returned once the file ``gate`` exists (and half a
    second later), so that the job is still running when the test adds and retires workers."""
    deadline = time.monotonic() + START_TIMEOUT
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    return frame.iloc[index::N_PARTS].reset_index(drop=True)


def test_worker_added_and_retired_mid_job(deployment, head_checkpoint, tmp_path):
    deployment.start_worker("first")
    frame = rows(N_PARTS * 4)
    gate = tmp_path / "gate"
    quality = DistributedDataClassifier(model_identifier=head_checkpoint, label_field="quality", batch_tokens=1024)
    expected = quality(frame)
    with Client(scheduler_file=str(deployment.scheduler_file)) as client:
        wait_for_workers(client, {"first"})
        warm = quality(dd.from_pandas(frame.head(8), npartitions=1)).compute()  # the first worker loads the model
        assert len(warm) == 8 and loads_on(client, head_checkpoint) == {"first": 1}

        ddf = dd.from_map(gated_partition, range(N_PARTS), frame=frame, gate=str(gate),
                          meta=frame.iloc[:0], enforce_metadata=False)
        future = client.compute(quality(ddf))  # the first worker's one thread now waits at the gate
        deployment.start_worker("second")  # joins the running job
        wait_for_workers(client, {"first", "second"})
        gate.touch()
        assert not future.done(), future  # 24 partitions of >= 0.5 s each on two threads
        client.retire_workers(names=["first"], close_workers=True)  # graceful: its results move first
        wait_for_workers(client, {"second"})

        result = future.result(timeout=600)
        assert_every_row_once(result, expected, "quality")
        assert loads_on(client, head_checkpoint) == {"second": 1}, "the new worker loads the model once"
