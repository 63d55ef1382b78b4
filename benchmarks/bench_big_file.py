#!/usr/bin/env python
"""Peak memory per worker while one large input file is classified and written (issue 18).

The input is one parquet file of ``--rows`` rows (default 200,000): the English Debian
bookworm ``main`` descriptions from the apt lists (about 64k, read with ``lz4cat``),
repeated in order with a row id ``n``. The model is a tiny fabricated BERT
(:func:`nemo_cls_dask.testing.make_hf_sequence_checkpoint`: 2 layers, hidden 32), so the
run takes minutes and the memory measured is the data's, not a big model's.

Each run starts a fresh ``LocalCluster`` of ``--workers`` worker processes, warms every
worker on a small file (model loaded, libraries imported), records each worker's peak
RSS so far (``getrusage`` ``ru_maxrss``), classifies the large file with
:func:`~nemo_cls_dask.classify_files`, checks the output (every row once, in order) and
prints each worker's peak RSS and its growth over the warm-up peak.

``--part-rows 0`` writes the file the old way, whole, by one writer task (this branch: a
part size above the file's rows; a checkout without ``part_rows``, such as ``main``
before issue 18: its only way). Compare::

    python benchmarks/bench_big_file.py --part-rows 0      # before: one writer holds the file
    python benchmarks/bench_big_file.py                    # after: parts of 50,000 rows
    PYTHONPATH=/path/to/main-export python benchmarks/bench_big_file.py --part-rows 0

Writes only under a temporary folder (``--keep`` prints and keeps it).
"""

from __future__ import annotations

import argparse
import inspect
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import build_default_model as debian  # noqa: E402

import nemo_cls_dask  # noqa: E402
from nemo_cls_dask import DistributedDataClassifier, classify_files, get_client  # noqa: E402
from nemo_cls_dask.cluster import close_client  # noqa: E402
from nemo_cls_dask.testing import make_hf_sequence_checkpoint  # noqa: E402

TRANSLATIONS = Path("/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_i18n_Translation-en.lz4")
MiB = 1 << 20


def worker_peak_rss() -> tuple[int, int]:
    """In a worker: (peak RSS of this process so far, current RSS), in bytes."""
    import psutil

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, psutil.Process().memory_info().rss


def debian_texts() -> list[str]:
    texts = sorted(set(debian.load_descriptions(TRANSLATIONS).values()))
    return [text for text in texts if text.strip()]


def write_input(folder: Path, rows: int) -> Path:
    texts = debian_texts()
    frame = pd.DataFrame({"text": [texts[i % len(texts)] for i in range(rows)], "n": np.arange(rows)})
    path = folder / "in" / "big.parquet"
    path.parent.mkdir(parents=True)
    frame.to_parquet(path)
    (folder / "warm").mkdir()
    frame.iloc[:200].to_parquet(folder / "warm" / "small.parquet")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--part-rows", type=int, default=None,
                        help="rows per output part (default: the package's); 0: write the file whole, the old way")
    parser.add_argument("--max-chars", type=int, default=1000, help="text cut before tokenizing (speed only)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    has_parts = "part_rows" in inspect.signature(classify_files).parameters
    options = {}
    if has_parts:
        options["part_rows"] = args.rows + 1 if args.part_rows == 0 else args.part_rows or None
        options = {k: v for k, v in options.items() if v is not None}
    elif args.part_rows:
        raise SystemExit("this checkout of nemo_cls_dask has no part_rows: run it with --part-rows 0")
    folder = Path(tempfile.mkdtemp(prefix="bench_big_file_"))
    started = time.perf_counter()
    source = write_input(folder, args.rows)
    checkpoint = make_hf_sequence_checkpoint(folder / "model", ["a", "b", "c"], arch="bert")
    classifier = DistributedDataClassifier(model_identifier=checkpoint, max_chars=args.max_chars, autocast=False)
    if has_parts:
        from nemo_cls_dask.output_parts import DEFAULT_PART_ROWS

        shown = options.get("part_rows", DEFAULT_PART_ROWS)
    else:
        shown = "not available (whole file, one writer)"
    print(f"package: {Path(nemo_cls_dask.__file__).parent}  part_rows: {shown}")
    print(f"input: {source} ({args.rows} rows, {source.stat().st_size / MiB:.1f} MiB parquet; "
          f"prepared in {time.perf_counter() - started:.0f} s)")
    client = get_client(n_workers=args.workers, threads_per_worker=1, device="cpu")
    try:
        classify_files(folder / "warm", folder / "warm-out", classifier, client=client)
        warm = client.run(worker_peak_rss)
        run_started = time.perf_counter()
        result = classify_files(source, folder / "out", classifier, client=client, **options)
        seconds = time.perf_counter() - run_started
        peaks = client.run(worker_peak_rss)
    finally:
        close_client(client)
    assert result.ok, [outcome.error for outcome in result.files]
    back = pd.read_parquet(folder / "out" / "big.parquet", columns=["n"])
    assert back["n"].tolist() == list(range(args.rows)), "rows lost, repeated or out of order"
    parts = getattr(result.files[0], "parts", None)  # absent before issue 18
    print(f"written: {folder / 'out' / 'big.parquet'} ({'folder of ' + str(parts) + ' parts' if parts else 'one file'}), "
          f"{result.rows} rows in order, {seconds:.0f} s ({result.docs_per_second:.0f} docs/s)")
    print("| worker | RSS after warm-up (MiB) | peak RSS during the run (MiB) | peak growth over warm-up (MiB) |")
    print("|---|---:|---:|---:|")
    for i, address in enumerate(sorted(peaks)):
        warm_peak, warm_now = warm[address]
        peak, _ = peaks[address]
        print(f"| {i} | {warm_now / MiB:.0f} | {peak / MiB:.0f} | {(peak - warm_peak) / MiB:.0f} |")
    print(f"max peak over workers: {max(p for p, _ in peaks.values()) / MiB:.0f} MiB")
    if args.keep:
        print(f"kept: {folder}")
    else:
        import shutil

        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
