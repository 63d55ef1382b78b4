"""Peak memory and time of one hostile partition: a 20 MB string of ``!`` and one of CJK.

Without the default character cap the tokenizer grew past 10 GB on the first row; with it
only ``tokenization.default_max_chars`` characters reach the tokenizer. Prints the rows'
labels, the wall time and the growth of this process's peak RSS.

    python benchmarks/bench_untrusted_text.py [--megabytes 20]
"""

from __future__ import annotations

import argparse
import resource
import time

import pandas as pd

from nemo_cls_dask import DistributedDataClassifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=20, help="characters per hostile row, in millions")
    args = parser.parse_args()
    classifier = DistributedDataClassifier(model_identifier="debian-topics", device="cpu")
    classifier(pd.DataFrame({"text": ["load the model first"]}))
    size = args.megabytes * 1_000_000
    frame = pd.DataFrame({"text": ["!" * size, "\u4e2d" * size]})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    out = classifier(frame)
    seconds = time.perf_counter() - start
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"labels {out['preds'].tolist()}  time {seconds:.2f} s  peak RSS {before / 1024:.0f} MB before the "
          f"partition (model loaded, rows built), growth {growth:.0f} MB")


if __name__ == "__main__":
    main()
