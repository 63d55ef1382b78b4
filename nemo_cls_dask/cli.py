"""``nemo-cls-dask``: classify jsonl/parquet files and folders from the command line.

``nemo-cls-dask classify`` with no arguments runs the packaged default model
(``debian-topics``) over the packaged sample of held-out Debian package descriptions on a
local cluster, and prints accuracy, the majority-class baseline and docs/s.

Output: one file per input file under the OUTPUT folder, at the input's relative path
(``IN/a/part-0.parquet`` -> ``OUTPUT/a/part-0.parquet``), in the input's format unless
``--format`` says otherwise. Each file is written atomically (temporary name, then
rename), so a run that was killed can simply be started again: files whose output exists
are skipped (the summary counts them), leftover temporary files are removed, and
``--overwrite`` redoes everything. Invalid UTF-8 in jsonl input fails that file with its
path and line (other files are still written) unless ``--encoding-errors replace``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import NemoClsDaskError
from .io import SAMPLE_PATH, output_format, read_frame

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
    classify.add_argument("--autocast", default="auto", choices=["auto", "bf16", "fp16", "fp32"], help="auto: bf16/fp16 on GPU; bf16 on CPUs with AVX512-BF16/AMX, else fp32")
    classify.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    classify.add_argument("--cache-dir", default=None, help="Hugging Face cache folder")
    classify.add_argument("--truth-field", default=None, help="column with true labels: print accuracy and the majority baseline")
    classify.add_argument(
        "--format", default=None, choices=["parquet", "jsonl"],
        help="output format (default: each input file's own format); OUTPUT/<relative path> gets the matching suffix",
    )
    classify.add_argument(
        "--overwrite", action="store_true",
        help="redo every file (default: resume: output files that exist are complete and are skipped)",
    )
    classify.add_argument(
        "--encoding-errors", default="strict", choices=["strict", "replace"],
        help="invalid UTF-8 in jsonl input: fail naming the file and line (strict), or read it as U+FFFD (replace)",
    )
    cluster = classify.add_argument_group("cluster")
    cluster.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    cluster.add_argument("--scheduler-file", default=None, help="scheduler file of an existing Dask cluster")
    cluster.add_argument("--n-workers", type=int, default=None, help="local workers (default: one per GPU or CPU core)")
    cluster.add_argument("--cluster-device", default="auto", choices=["auto", "gpu", "cpu"], help="kind of local cluster")
    from .cli_train import add_train_parser

    add_train_parser(commands)
    return parser


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM ends the command like Ctrl-C: cleanup runs (lock released, cluster closed)."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if on_main_thread else None
    try:
        if args.command == "classify":
            return run_classify(args)
        if args.command == "train":
            from .cli_train import run_train

            return run_train(args)
    except NemoClsDaskError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 1


def _check_output(source: Path, output: Path) -> None:
    """Refuse an output that overlaps the input or is a file: a file is never replaced by a folder."""
    from .output_folder import OutputError

    if output.is_symlink() and not output.is_dir():
        raise OutputError(f"Output {output} is a link to {os.readlink(output)}, not a folder; give a folder (nothing was changed).")
    if output.exists() and not output.is_dir():
        raise OutputError(f"Output {output} is a file, not a folder; give a folder (a file is never replaced by a folder).")
    source_root, output_root = source.resolve(), output.resolve()
    if output_root == source_root or source_root in output_root.parents or output_root in source_root.parents:
        raise OutputError(f"Output {output} overlaps the input {source}; choose another output folder.")


def run_classify(args: argparse.Namespace) -> int:
    """Classify every input file into its own output file; skip files already done.

    All pending files' work goes to the cluster at once; each file is written (atomically,
    by a task on a worker) as soon as its partitions are classified, so a killed run keeps
    the files it finished and a re-run does the rest.
    """
    from .io import plan_files
    from .output_folder import check_targets, remove_own_temporaries

    source = Path(args.input) if args.input else SAMPLE_PATH
    truth_field = args.truth_field or (SAMPLE_TRUTH_FIELD if args.input is None else None)
    output = Path(args.output)
    _check_output(source, output)
    fmt = args.format or (output_format(output) if _has_data_suffix(output) else None)
    jobs = plan_files(source, output, fmt)
    check_targets([job.target for job in jobs], source, output)
    classifiers = _build_classifiers(args)
    for classifier in classifiers:
        classifier.describe()  # a bad model fails here, before a cluster starts
    lock = _lock_output(output)
    try:
        note = lock.previous_note()
        if note:
            print(note)
        stale = remove_own_temporaries(job.target for job in jobs)
        return _classify_pending(args, jobs, classifiers, source, output, truth_field, stale)
    finally:
        lock.release()


def _lock_output(output: Path) -> Any:
    """Create the output folder and lock it for this run (write errors come before any compute)."""
    from .output_folder import OutputError, OutputLock

    try:
        output.mkdir(parents=True, exist_ok=True)
        return OutputLock(output).acquire()
    except OutputError:
        raise
    except OSError as error:
        raise OutputError(f"Cannot write to the output folder {output}: {error.strerror or error} ({error.filename or output}).") from error


def _classify_pending(args, jobs, classifiers, source, output, truth_field, stale) -> int:
    import dask
    from distributed import as_completed

    from .classifiers import classify
    from .cluster import get_client
    from .engine import engine_stats, reset_engine_stats
    from .io import write_file_result

    # --overwrite redoes every file; each old output is replaced only once its new version is complete.
    pending = jobs if args.overwrite else [job for job in jobs if not job.done]
    skipped = len(jobs) - len(pending)
    if stale:
        print(f"removed {len(stale)} unfinished temporary file(s) of an interrupted run")
    if not pending:
        print(f"all {len(jobs)} output file(s) under {output} are complete; nothing to do (--overwrite redoes them)")
        print(f"files: 0 written, {skipped} skipped (already complete), 0 failed")
        return 0
    label_column = classifiers[0].summary_column()
    client = get_client(args.scheduler, scheduler_file=args.scheduler_file, device=args.cluster_device, n_workers=args.n_workers)
    failures: list[tuple[Path, str]] = []
    try:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        per_file = max(1, -(-2 * workers // len(pending)))
        tasks = []
        for job in pending:
            frame = _read_input(job.source, per_file, args.encoding_errors)
            if truth_field is not None and truth_field not in frame.columns:
                raise NemoClsDaskError(f"--truth-field {truth_field!r} is not a column of {job.source}; columns: {list(frame.columns)}")
            result = classify(frame, classifiers)
            tasks.append(dask.delayed(write_file_result)(
                result.to_delayed(), str(job.target), job.output_format, label_column, truth_field,
                dask_key_name=f"write-{job.target.name}-{dask.base.tokenize(str(job.target), result)}",
            ))
        formats = sorted({job.output_format for job in pending})
        print(
            f"classifying {source} -> {output} ({'/'.join(formats)}) with {', '.join(c.model_identifier for c in classifiers)} "
            f"on {workers} worker(s): {len(pending)} file(s) to do, {skipped} already complete"
        )
        client.run(reset_engine_stats)
        start = time.perf_counter()
        futures = client.compute(tasks)
        job_of = {future.key: job for future, job in zip(futures, pending)}
        summaries = []
        for done, future in enumerate(as_completed(futures), 1):
            job = job_of[future.key]
            if future.status == "error":
                failures.append((job.source, _describe_failure(job.source, future.exception())))
                print(f"[{done}/{len(pending)}] FAILED {job.source}: {failures[-1][1]}", file=sys.stderr)
                continue
            summary = future.result()
            summaries.append(summary)
            print(f"[{done}/{len(pending)}] wrote {job.target} ({summary['rows']} rows)")
        seconds = time.perf_counter() - start
        stats = _add_counts(client.run(engine_stats).values())
        values = _merge_summaries(summaries)
        _print_summary(values, seconds, stats, classifiers[0], truth_field)
        print(f"files: {len(summaries)} written, {skipped} skipped (already complete), {len(failures)} failed")
    finally:
        _close(client)
    if failures:
        print(f"error: {len(failures)} file(s) failed; fix them and run the same command again to finish "
              f"(completed files are kept and skipped):", file=sys.stderr)
        for path, message in failures:
            print(f"  {path}: {message}", file=sys.stderr)
        return 2
    return 0


def _has_data_suffix(path: Path) -> bool:
    from .io import JSONL_SUFFIXES, PARQUET_SUFFIXES, _suffix

    return _suffix(path) in PARQUET_SUFFIXES + JSONL_SUFFIXES


def _read_input(path: Path, min_partitions: int, encoding_errors: str) -> Any:
    try:
        return read_frame(path, min_partitions=min_partitions, encoding_errors=encoding_errors)
    except UnicodeDecodeError as error:
        raise NemoClsDaskError(_describe_failure(path, error)) from error


def _describe_failure(path: Path, error: BaseException | None) -> str:
    """The error of one file, with the line of the first invalid UTF-8 byte when that was it."""
    from .io import find_invalid_utf8

    text = f"{type(error).__name__}: {error}"
    if isinstance(error, UnicodeDecodeError) or "codec can't decode" in str(error):
        where = find_invalid_utf8(path)
        if where is not None:
            text = (
                f"invalid UTF-8 at line {where[0]} (byte {where[1]}) of {path}; fix the file or pass "
                f"--encoding-errors replace to read such bytes as U+FFFD"
            )
    return text


def _add_counts(counts: Any) -> Counter:
    """Sum ``{key: count}`` dicts (per file, or per worker) into one."""
    total: Counter = Counter()
    for part in counts:
        total.update(part)
    return total


def _merge_summaries(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    import pandas as pd

    def total(key: str) -> pd.Series:
        counts = _add_counts(summary.get(key, {}) for summary in summaries)
        return pd.Series(list(counts.values()), index=pd.Index(list(counts.keys()), dtype=object), dtype="int64")

    values: dict[str, Any] = {"labels": total("labels"), "rows": sum(s["rows"] for s in summaries)}
    if summaries and "correct" in summaries[0]:
        values["correct"] = sum(s["correct"] for s in summaries)
        values["truth"] = total("truth")
    return values


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


def _print_summary(values: dict[str, Any], seconds: float, stats: dict[str, int], classifier: Any, truth_field: str | None) -> None:
    counts = values["labels"]
    rows = int(values.get("rows", counts.sum()))
    print()
    print(f"rows: {rows}   time: {seconds:.1f} s   docs/s: {rows / max(seconds, 1e-9):.1f} (model loading included)")
    if stats.get("padded_tokens"):
        print(
            f"tokens: {stats['real_tokens']} real / {stats['padded_tokens']} computed "
            f"(padding efficiency {stats['real_tokens'] / stats['padded_tokens']:.3f}) in {stats['batches']} batches"
        )
    print("label counts:")
    for label, count in counts.sort_values(ascending=False).items():
        print(f"  {'<null>' if label is None else label!s:<24} {count}")
    if truth_field is not None and "correct" in values and len(values["truth"]):
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
