#!/usr/bin/env python
"""Docs/s of the teacher and of two saved distilled students (issue 19) in one run.

All three run as operators on one 2-worker ``LocalCluster`` over the same 200 test rows,
models loaded first (``nemo_cls_dask.distillation.docs_per_second``). Reads the data cache
and the student folders that ``bench_distill.py --out OUT`` wrote.

    HF_HUB_OFFLINE=1 python benchmarks/distill_speed_check.py --out /work/tmp/distill2
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402

from nemo_cls_dask import DistributedDataClassifier, get_client  # noqa: E402
from nemo_cls_dask.distillation import docs_per_second  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/work/tmp/distill2", help="bench_distill.py's --out folder")
    parser.add_argument("--data", default="data-12000-1000.parquet", help="its data cache, inside --out")
    parser.add_argument("--rows", type=int, default=200)
    args = parser.parse_args()
    out = Path(args.out)
    data = pd.read_parquet(out / args.data)
    timed = data[data["part"] == "test"].reset_index(drop=True)[["text"]].iloc[: args.rows]
    models = {"kimcnn-word": out / "students" / "kimcnn-word-distilled", "tfidf": out / "students" / "tfidf-distilled",
              "teacher": "debian-topics"}
    client = get_client(n_workers=2, device="cpu", threads_per_worker=1)
    try:
        for name, model in models.items():
            speed = docs_per_second(DistributedDataClassifier(model_identifier=str(model), label_field="t"), timed, 4)
            print(f"{name}: {speed:.1f} docs/s", flush=True)
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
