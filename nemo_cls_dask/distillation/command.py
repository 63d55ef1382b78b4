"""``nemo-cls-dask distill INPUT MODEL_OUT --teacher T --student S``: a thin layer over :func:`distill`.

INPUT is a parquet, jsonl or csv file or folder (the unlabelled pool). The teacher's outputs go to
``--work-dir`` (default ``MODEL_OUT.teacher-outputs``) partition by partition, so running
the same command again after an interruption pays the teacher only for what is missing.
The student is saved to MODEL_OUT with ``distill_report.json`` beside it. ``--labelled FILE``
adds true-labelled rows the student trains on too (``distill(labelled=...)``).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..cli.options import add_storage_options
from ..errors import NemoClsDaskError
from .names import PRESETS, TARGETS


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``distill`` subcommand to ``subparsers`` (from ``add_subparsers``) and return it."""
    parser = subparsers.add_parser(
        "distill",
        help="train a fast student classifier on a slow teacher's labels of a parquet/jsonl/csv pool",
        description="Label a pool of texts with a teacher on a Dask cluster (resumable), train a fast student on "
        "the teacher's probabilities or labels, and report agreement, accuracy and docs/s on held-out rows.",
    )
    parser.add_argument("input", help="the unlabelled pool: parquet, jsonl or csv file(s) or folder, or its URL (s3://, gs://, file://)")
    parser.add_argument("model_out", help="local folder to save the student to (must not exist, or be empty)")
    parser.add_argument("--teacher", required=True,
                        help="checkpoint folder, hub id, 'debian-topics', or a ready-made class name (quality, "
                             "domain, fineweb-edu, ...)")
    parser.add_argument("--teacher-model", default=None,
                        help="with a ready-made class name: a local checkpoint folder for it instead of its hub repo")
    parser.add_argument("--student", default="tfidf", choices=PRESETS, help="the student (default: tfidf)")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--truth-field", default=None, help="column of true labels: report both models' accuracy")
    parser.add_argument("--work-dir", default=None, help="folder for the teacher's outputs (default: MODEL_OUT.teacher-outputs)")
    parser.add_argument("--heldout-fraction", type=float, default=0.1)
    parser.add_argument("--targets", default="auto", choices=TARGETS,
                        help="auto: the teacher's probabilities where the student can learn them, else its labels")
    parser.add_argument("--labelled", default=None,
                        help="true-labelled rows (parquet, jsonl or csv file or folder) the student trains on too, "
                             "beside the teacher's outputs; never sent to the teacher")
    parser.add_argument("--labelled-field", default=None,
                        help="label column of --labelled (default: --truth-field if given, else 'label')")
    parser.add_argument("--max-train-rows", type=int, default=None)
    parser.add_argument("--speed-rows", type=int, default=500, help="held-out rows both models are timed on (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None, help="Hugging Face cache folder for a hub teacher")
    add_storage_options(parser)
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    cluster.add_argument("--n-workers", type=int, default=None, help="local workers (default: one per GPU or CPU core)")
    cluster.add_argument("--cluster-device", default="auto", choices=["auto", "gpu", "cpu"])
    parser.set_defaults(command="distill", run=run)
    return parser


def build_teacher(args: argparse.Namespace) -> Any:
    """The teacher named on the command line: a ready-made class, or a model identifier."""
    from ..classifiers.registry import CLASSIFIERS, make_classifier

    options = {"text_field": args.text_field, "cache_dir": args.cache_dir}
    if args.teacher in CLASSIFIERS:
        if args.teacher_model:
            options["model_identifier"] = args.teacher_model
        return make_classifier(args.teacher, **options)
    if args.teacher_model:
        raise NemoClsDaskError("--teacher-model goes with a ready-made class name as --teacher.")
    from ..classifiers.base import DistributedDataClassifier

    return DistributedDataClassifier(model_identifier=args.teacher, **options)


def labelled_field(args: argparse.Namespace) -> str:
    """The label column of ``--labelled``: ``--labelled-field``, else ``--truth-field``, else ``label``."""
    return args.labelled_field or args.truth_field or "label"


def read_labelled(args: argparse.Namespace, options: dict[str, Any]) -> Any:
    """``--labelled`` read into memory (a pandas frame; true-labelled rows are few), its columns
    checked before a cluster starts; None without ``--labelled``."""
    if args.labelled is None:
        if args.labelled_field is not None:
            raise NemoClsDaskError("--labelled-field goes with --labelled (a file of true-labelled rows).")
        return None
    from ..io import read_frame

    frame = read_frame(args.labelled, storage_options=options)
    field = labelled_field(args)
    missing = [name for name in (args.text_field, field) if name not in frame.columns]
    if missing:
        raise NemoClsDaskError(f"Column(s) {missing} are not in --labelled {args.labelled}; its columns are "
                               f"{list(frame.columns)} (the label column is --labelled-field, default "
                               f"--truth-field or 'label').")
    return frame[[args.text_field, field]].compute()


def run(args: argparse.Namespace) -> int:
    """Distil, print the report and return the exit code (errors of this package propagate:
    the CLI prints them and exits with 2)."""
    from ..cluster import close_client, get_client
    from ..cli.options import storage_options
    from ..io import read_frame
    from ..storage import in_process_only, local_path, location
    from .core import check_model_out, distill

    client = None
    try:
        teacher = build_teacher(args)
        options = storage_options(args)
        if args.scheduler is None and in_process_only(location(args.input, options)):
            raise NemoClsDaskError(f"{args.input} lives in this process's memory, which the worker processes of the "
                                   "cluster this command starts cannot see; give a file, folder or URL they can read.")
        pool = read_frame(args.input, storage_options=options)
        for name in (args.text_field, args.truth_field):  # checked again by distill(), but before a cluster starts
            if name is not None and name not in pool.columns:
                raise NemoClsDaskError(f"Column {name!r} is not in {args.input}; its columns are {list(pool.columns)}.")
        labelled = read_labelled(args, options)
        model_out = check_model_out(local_path(args.model_out, "MODEL_OUT"))
        teacher.describe()
        work_dir = local_path(args.work_dir, "--work-dir") if args.work_dir else model_out.parent / f"{model_out.name}.teacher-outputs"
        client = get_client(args.scheduler, device=args.cluster_device, n_workers=args.n_workers)
        result = distill(
            teacher, args.student, pool, work_dir=work_dir, model_out=model_out, text_field=args.text_field,
            truth_field=args.truth_field, heldout_fraction=args.heldout_fraction, seed=args.seed,
            targets=args.targets, max_train_rows=args.max_train_rows, speed_rows=args.speed_rows,
            labelled=labelled, labelled_field=labelled_field(args),
        )
    finally:
        if client is not None:
            close_client(client)
    print(result.summary())
    print(f"report: {result.path}/distill_report.json")
    return 0
