"""``nemo-cls-dask classify``: a thin shell over :func:`nemo_cls_dask.classify_files`.

With no arguments it runs the packaged default model (``debian-topics``) over the packaged
sample of held-out Debian package descriptions on a local cluster, and prints accuracy,
the majority-class baseline and docs/s.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .options import (
    add_cluster_options,
    add_engine_options,
    add_overwrite,
    add_storage_options,
    add_text_field,
    autocast_value,
    cluster_options,
    positive_int,
    storage_options,
)

DEFAULT_MODEL = "debian-topics"
SAMPLE_TRUTH_FIELD = "section"
DESCRIPTION = """\
Classify the text of data files on a Dask cluster: one output file per input file under
OUTPUT, at the input's relative path (IN/a/part-0.parquet -> OUTPUT/a/part-0.parquet), in
the input's format unless --format says otherwise (csv/tsv input is written as parquet).
Inputs: .parquet/.pq, .jsonl/.json(.gz), .csv(.gz), .tsv(.gz); names starting with '.' or
'_' and hidden folders are skipped.

Each file is written atomically (temporary name, then rename), so a killed run can simply
be started again: outputs that exist are skipped and the temporary files of this run's
outputs are removed. --overwrite redoes every file, replacing each old output only when its
new version is complete. The output folder is locked while a run uses it; a run never
writes into the input, through a link, or over a file given as OUTPUT. The settings that
produced the outputs are recorded in OUTPUT/_nemo_cls_dask.json; a re-run with other
settings needs --overwrite. A file that cannot be read is reported as FAILED, the others are
written, and the exit code is 2; run the same command again after fixing it.

INPUT and OUTPUT may be fsspec URLs (s3://bucket/in, gs://..., file://...) where the
filesystem package is installed (s3fs, gcsfs); --storage-option passes its options. On
object stores, where rename is a copy, each output is uploaded whole under a temporary key
and then copied to its name, and the lock is advisory (see the README, "Storage")."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``classify`` command to ``subparsers`` (from ``add_subparsers``)."""
    parser = subparsers.add_parser(
        "classify",
        help="add label (and score) columns to parquet/jsonl/csv files",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", nargs="?", help="file or folder, or its URL (default: the packaged Debian sample)")
    parser.add_argument("output", nargs="?", default="classified", help="output folder, or its URL (default: ./classified)")
    parser.add_argument("--model", default=None, help=f"hub id, checkpoint folder or packaged name (default: {DEFAULT_MODEL})")
    parser.add_argument(
        "--classifier", default=None,
        help="comma-separated ready-made classifiers to run in one pass (e.g. quality,domain); each writes its own columns",
    )
    add_text_field(parser)
    parser.add_argument("--label-field", default=None, help="label column (default: preds; ready-made classifiers use their own)")
    parser.add_argument("--score-field", default=None, help="also write per-label probabilities to this column")
    parser.add_argument("--filter-by", default=None, help="comma-separated labels to keep")
    parser.add_argument("--max-chars", type=positive_int, default=None, help="cut text to this many characters before tokenizing")
    parser.add_argument("--max-seq-length", type=positive_int, default=None, help="tokens per text (default: the model's)")
    add_engine_options(parser, batch_tokens=None, max_batch_rows=1024,
                       batch_tokens_help="token budget per forward pass (rows x padded length)")
    parser.add_argument("--truth-field", default=None, help="column with true labels: print accuracy and the majority baseline")
    parser.add_argument(
        "--format", default=None, choices=["parquet", "jsonl"],
        help="output format (default: each input file's own format); OUTPUT/<relative path> gets the matching suffix",
    )
    add_overwrite(parser, "redo every file, replacing each old output once its new version is complete "
                          "(default: resume: outputs that exist are skipped)")
    parser.add_argument(
        "--encoding-errors", default="strict", choices=["strict", "replace"],
        help="invalid UTF-8 in jsonl/csv input: fail naming the file and line (strict), or read it as U+FFFD (replace)",
    )
    parser.add_argument(
        "--part-rows", type=positive_int, default=None, metavar="N",
        help="an input file of more rows is written as a folder of parts of N rows under its output name "
             "(OUTPUT/name.parquet/part.00000.parquet ...), resumed per part; bounds a writer's memory "
             "(default: 50000)",
    )
    parser.add_argument(
        "--report", default=None, metavar="PATH.html",
        help="also write an HTML report (label distribution, confidence, throughput and padding, accuracy and "
             "confusion matrix with --truth-field) from the output files' label/score/truth columns",
    )
    parser.add_argument(
        "--backend", default="auto", choices=["auto", "pandas", "cudf"],
        help="partitions the model sees: cudf needs RAPIDS and a GPU cluster; auto (default) uses cuDF when "
             "every worker has a GPU and cuDF is installed, else pandas. Files are read on the host either way",
    )
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="show per-partition progress (default: only on a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    add_storage_options(parser)
    add_cluster_options(parser)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Classify, print what happened and the summary; exit code 2 when a file failed."""
    from ..files import classify_files
    from ..io import SAMPLE_PATH

    source = args.input or SAMPLE_PATH
    truth_field = args.truth_field or (SAMPLE_TRUTH_FIELD if args.input is None else None)
    output = args.output
    classifiers = build_classifiers(args)
    if args.report:
        from ..report import check_report_path

        check_report_path(args.report, args.overwrite)  # before any cluster starts
    result = classify_files(
        source, output, classifiers,
        output_format=args.format or _format_from_suffix(output),
        overwrite=args.overwrite,
        truth_field=truth_field,
        encoding_errors=args.encoding_errors,
        backend=args.backend,
        cluster=cluster_options(args),
        progress=args.progress,
        echo=_echo,
        storage_options=storage_options(args),
        **({"part_rows": args.part_rows} if args.part_rows else {}),
    )
    if not result.written and not result.failed:
        print(f"all {len(result.files)} output file(s) under {output} are complete; nothing to do (--overwrite redoes them)")
    else:
        print_summary(result, classifiers[0])
    print(f"files: {len(result.written)} written, {len(result.skipped)} skipped (already complete), {len(result.failed)} failed")
    if args.report and (result.written or result.skipped):
        from ..report import write_run_report

        page = write_run_report(result, args.report, label_field=classifiers[0].summary_column(),
                                score_field=getattr(classifiers[0], "score_field", None), truth_field=truth_field,
                                labels=result.known_labels, overwrite=args.overwrite)
        print(f"report: {page}")
    if result.failed:
        print(f"error: {len(result.failed)} file(s) failed; fix them and run the same command again to finish "
              f"(completed files are kept and skipped):", file=sys.stderr)
        for outcome in result.failed:
            print(f"  {outcome.source}: {outcome.error}", file=sys.stderr)
        return 2
    return 0


def _echo(line: str) -> None:
    """Print an event line (failures to stderr) without tearing a progress bar on the terminal."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr if " FAILED " in line else sys.stdout)
    (sys.stderr if " FAILED " in line else sys.stdout).flush()


def _format_from_suffix(output: str) -> str | None:
    from ..io import output_format, has_data_suffix

    return output_format(output) if has_data_suffix(output) else None


def build_classifiers(args: argparse.Namespace) -> list[Any]:
    """The classifiers named by --classifier, or one DistributedDataClassifier for --model."""
    from ..classifiers import DistributedDataClassifier, make_classifier
    from ..errors import InputError

    options: dict[str, Any] = dict(
        text_field=args.text_field,
        max_chars=args.max_chars,
        max_seq_length=args.max_seq_length,
        batch_tokens=args.batch_tokens,
        max_batch_rows=args.max_batch_rows,
        autocast=autocast_value(args.autocast),
        device=args.device,
        cache_dir=args.cache_dir,
    )
    if args.classifier:
        if args.model or args.label_field or args.score_field or args.filter_by:
            raise InputError("--classifier uses each classifier's own model and columns; drop --model/--label-field/--score-field/--filter-by.")
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


def print_summary(result: Any, classifier: Any) -> None:
    """Rows, speed (and what the clock covers), padding, label counts, accuracy."""
    print()
    print(
        f"rows: {result.rows}   time: {result.seconds:.1f} s   docs/s: {result.docs_per_second:.1f} "
        f"(clock from the first task sent to the last file written, model loading included; "
        f"{result.total_seconds:.1f} s with input checks and cluster start/stop)"
    )
    if result.padded_tokens:
        print(
            f"tokens: {result.real_tokens} real / {result.padded_tokens} computed "
            f"(padding efficiency {result.padding_efficiency:.3f}) in {result.batches} batches"
        )
    print("label counts:")
    for label, count in sorted(result.label_counts.items(), key=lambda item: -item[1]):
        print(f"  {'<null>' if label is None else label!s:<24} {count}")
    if result.truth_field is None or not result.truth_counts:
        return
    scored = sum(result.truth_counts.values())
    print(f"accuracy on {scored} rows with a '{result.truth_field}' label: {result.accuracy:.3f}")
    unknown = result.unknown_truth_rows
    if unknown:
        known = result.accuracy_on_known_labels
        print(f"  {unknown} of them have a true label the model cannot predict; "
              f"accuracy on the {scored - unknown} rows with a label it knows: "
              + (f"{known:.3f}" if known is not None else "n/a"))
    majority, note = _majority_label(classifier, result.truth_counts)
    baseline = result.truth_counts.get(majority, 0) / max(scored, 1)
    print(f"majority-class baseline (always '{majority}', {note}): {baseline:.3f}")


def _majority_label(classifier: Any, truth: dict[Any, int]) -> tuple[str, str]:
    """The training set's most frequent label when the model records it, else the data's."""
    counts = classifier.describe().config.get("training_label_counts")
    if counts:
        return max(counts, key=counts.get), "the most frequent training label"
    return str(max(truth, key=truth.get)), "the most frequent label of these rows"
