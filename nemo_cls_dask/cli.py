"""``nemo-cls-dask``: classify jsonl/parquet files and folders from the command line.

``nemo-cls-dask classify`` with no arguments runs the packaged default model
(``debian-topics``) over the packaged sample of held-out Debian package descriptions on a
local cluster, and prints accuracy, the majority-class baseline and docs/s.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import NemoClsDaskError
from .io import SAMPLE_PATH, output_format, read_frame, write_frame

DEFAULT_MODEL = "debian-topics"
SAMPLE_TRUTH_FIELD = "section"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nemo-cls-dask", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    classify = commands.add_parser(
        "classify",
        help="add label (and score) columns to jsonl/parquet files",
        description="Classify the text of jsonl/parquet files or folders on a Dask cluster.",
    )
    classify.add_argument("input", nargs="?", help="file or folder (default: the packaged Debian sample)")
    classify.add_argument("output", nargs="?", default="classified", help="output folder (default: ./classified)")
    classify.add_argument("--model", default=None, help="hub id, checkpoint folder or packaged name (default: debian-topics)")
    classify.add_argument(
        "--classifier", default=None,
        help="comma-separated ready-made classifiers to run in one pass (e.g. quality,domain); each writes its own columns",
    )
    classify.add_argument("--text-field", default="text")
    classify.add_argument("--label-field", default=None, help="label column (default: preds; ready-made classifiers use their own)")
    classify.add_argument("--score-field", default=None, help="also write per-label probabilities to this column")
    classify.add_argument("--filter-by", default=None, help="comma-separated labels to keep")
    classify.add_argument("--max-chars", type=int, default=None)
    classify.add_argument("--max-seq-length", type=int, default=None)
    classify.add_argument("--batch-tokens", type=int, default=None, help="token budget per forward pass (rows x padded length)")
    classify.add_argument("--max-batch-rows", type=int, default=1024)
    classify.add_argument("--autocast", default="auto", choices=["auto", "bf16", "fp16", "fp32"], help="auto: bf16/fp16 on GPU, fp32 on CPU")
    classify.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    classify.add_argument("--cache-dir", default=None, help="Hugging Face cache folder")
    classify.add_argument("--truth-field", default=None, help="column with true labels: print accuracy and the majority baseline")
    classify.add_argument("--format", default=None, choices=["parquet", "jsonl"], help="output format (default: from OUTPUT's suffix, else parquet)")
    classify.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    cluster = classify.add_argument_group("cluster")
    cluster.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    cluster.add_argument("--scheduler-file", default=None, help="scheduler file of an existing Dask cluster")
    cluster.add_argument("--n-workers", type=int, default=None, help="local workers (default: one per GPU or CPU core)")
    cluster.add_argument("--cluster-device", default="auto", choices=["auto", "gpu", "cpu"], help="kind of local cluster")
    from .cli_train import add_train_parser

    add_train_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "classify":
            return run_classify(args)
        if args.command == "train":
            from .cli_train import run_train

            return run_train(args)
    except NemoClsDaskError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1


def _check_paths(source: Path, output: Path, overwrite: bool) -> None:
    source, output = source.resolve(), output.resolve()
    if output == source or source in output.parents or output in source.parents:
        raise NemoClsDaskError(f"Output {output} overlaps the input {source}; choose another output folder.")
    occupied = output.is_file() or (output.is_dir() and any(output.iterdir()))
    if occupied:
        if not overwrite:
            raise NemoClsDaskError(f"Output {output} already exists; pass --overwrite to replace it.")
        shutil.rmtree(output) if output.is_dir() else output.unlink()


def run_classify(args: argparse.Namespace) -> int:
    from distributed import progress

    from .classifiers import classify
    from .cluster import get_client
    from .engine import engine_stats

    source = Path(args.input) if args.input else SAMPLE_PATH
    truth_field = args.truth_field or (SAMPLE_TRUTH_FIELD if args.input is None else None)
    output = Path(args.output)
    _check_paths(source, output, args.overwrite)
    classifiers = _build_classifiers(args)
    client = get_client(args.scheduler, scheduler_file=args.scheduler_file, device=args.cluster_device, n_workers=args.n_workers)
    try:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        frame = read_frame(source, min_partitions=2 * workers)
        if truth_field is not None and truth_field not in frame.columns:
            raise NemoClsDaskError(f"--truth-field {truth_field!r} is not a column; columns: {list(frame.columns)}")
        result = classify(frame, classifiers)
        fmt = output_format(output, args.format)
        labels = result[classifiers[0].summary_column()]
        pieces: dict[str, Any] = {"written": write_frame(result, output, fmt, compute=False), "labels": labels.value_counts(dropna=False, split_out=1)}
        if truth_field is not None:
            pieces["correct"] = (labels == result[truth_field]).sum()
            pieces["truth"] = result[truth_field].value_counts(split_out=1)
        print(f"classifying {source} -> {output} ({fmt}) with {', '.join(c.model_identifier for c in classifiers)} on {workers} worker(s), {frame.npartitions} partitions")
        client.run(_reset_stats)
        start = time.perf_counter()
        futures = client.compute(list(pieces.values()))
        progress(futures)
        values = dict(zip(pieces, client.gather(futures)))
        seconds = time.perf_counter() - start
        stats = _sum_stats(client.run(engine_stats).values())
        _print_summary(values, seconds, stats, classifiers[0], truth_field)
    finally:
        _close(client)
    return 0


def _close(client: Any) -> None:
    """Close the client and, if this command started it, the local cluster too."""
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()


def _build_classifiers(args: argparse.Namespace) -> list[Any]:
    """The classifiers named by --classifier, or one DistributedDataClassifier for --model."""
    from .classifiers import DistributedDataClassifier, make_classifier

    options: dict[str, Any] = dict(
        text_field=args.text_field,
        max_chars=args.max_chars,
        max_seq_length=args.max_seq_length,
        batch_tokens=args.batch_tokens,
        max_batch_rows=args.max_batch_rows,
        autocast=True if args.autocast == "auto" else args.autocast,
        device=args.device,
        cache_dir=args.cache_dir,
    )
    if args.classifier:
        if args.model or args.label_field or args.score_field or args.filter_by:
            raise NemoClsDaskError("--classifier uses each classifier's own model and columns; drop --model/--label-field/--score-field/--filter-by.")
        for name, value in list(options.items()):
            if value is None:
                del options[name]  # keep each classifier's own default
        return [make_classifier(name.strip(), **options) for name in args.classifier.split(",") if name.strip()]
    return [
        DistributedDataClassifier(
            model_identifier=args.model or DEFAULT_MODEL,
            label_field=args.label_field or "preds",
            score_field=args.score_field,
            filter_by=args.filter_by.split(",") if args.filter_by else None,
            **options,
        )
    ]


def _reset_stats() -> None:
    from .engine import reset_engine_stats

    reset_engine_stats()


def _sum_stats(per_worker: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for stats in per_worker:
        for key, value in stats.items():
            total[key] = total.get(key, 0) + value
    return total


def _print_summary(values: dict[str, Any], seconds: float, stats: dict[str, int], classifier: Any, truth_field: str | None) -> None:
    counts = values["labels"]
    rows = int(counts.sum())
    print()
    print(f"rows: {rows}   time: {seconds:.1f} s   docs/s: {rows / seconds:.1f} (model loading included)")
    if stats.get("padded_tokens"):
        print(
            f"tokens: {stats['real_tokens']} real / {stats['padded_tokens']} computed "
            f"(padding efficiency {stats['real_tokens'] / stats['padded_tokens']:.3f}) in {stats['batches']} batches"
        )
    print("label counts:")
    for label, count in counts.sort_values(ascending=False).items():
        print(f"  {label!s:<24} {count}")
    if truth_field is not None and "correct" in values:
        truth = values["truth"]
        scored = int(truth.sum())
        accuracy = int(values["correct"]) / max(scored, 1)
        majority, baseline_note = _majority_label(classifier, truth)
        baseline = int(truth.get(majority, 0)) / max(scored, 1)
        print(f"accuracy on {scored} rows with a '{truth_field}' label: {accuracy:.3f}")
        print(f"majority-class baseline (always '{majority}', {baseline_note}): {baseline:.3f}")


def _majority_label(classifier: Any, truth: Any) -> tuple[str, str]:
    """The training set's most frequent label when the model records it, else the data's."""
    counts = classifier.describe().config.get("training_label_counts")
    if counts:
        return max(counts, key=counts.get), "the most frequent training label"
    return str(truth.idxmax()), "the most frequent label of these rows"


if __name__ == "__main__":
    raise SystemExit(main())
