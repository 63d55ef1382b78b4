"""``classify_files``: classify every data file of a folder into its own output file.

This is what ``nemo-cls-dask classify`` runs; the CLI only parses options and prints.

>>> from nemo_cls_dask import DistributedDataClassifier, classify_files
>>> result = classify_files("in/", "out/", DistributedDataClassifier(model_identifier="debian-topics"))
>>> result.written, result.failed, result.docs_per_second

What a run guarantees (see :mod:`nemo_cls_dask.io` and :mod:`nemo_cls_dask.output_folder`):

* one output file per input file at the input's relative path, each written atomically
  (temporary name, then ``os.replace``), so a name under ``output`` is always a complete
  file, also with ``overwrite=True``: an old output is replaced only by a complete new one;
* resume: outputs that exist are skipped; temporary files that this plan's writer left
  are removed, and nothing else is;
* an input of more than ``part_rows`` rows is written as a folder of ordered parts under
  the same name, one part per writer task, installed when complete and resumed per part
  (:mod:`nemo_cls_dask.output_parts`), so no worker holds a whole large file;
* the settings that produced the outputs are recorded (:mod:`nemo_cls_dask.manifest`); a
  resume with other settings is refused unless ``overwrite=True``;
* nothing outside the plan is touched: no output may resolve into the input tree or be a
  link, and the output folder is locked for the run;
* every input is checked (format, columns from the file's metadata) before a cluster
  starts; one unreadable or different file is reported as failed, the others are written;
* the result records per-file status, throughput, padding, label counts and a timeline.

``source`` and ``output`` may be fsspec URLs (``s3://``, ``gs://``, ``memory://``...; see
:mod:`nemo_cls_dask.storage` for what each store guarantees instead of ``os.replace``).
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError, NemoClsDaskError
from .io import FileJob, plan_files
from .manifest import MANIFEST_NAME, check_manifest, run_record, write_manifest
from .output_folder import OutputError, OutputLock, RemoteOutputLock, check_targets, lock_output, remove_own_temporaries
from .output_parts import (
    DEFAULT_PART_ROWS,
    FileAssembly,
    PartedFileJob,
    WriteUnit,
    has_parts,
    install,
    part_temporaries,
    split_large_files,
    write_units,
)
from .storage import AnyPath, in_process_only, is_remote, locations

DEFAULT_MODEL = "debian-topics"

#: One point per finished partition: (seconds since the tasks were sent, rows done,
#: padding efficiency so far = real tokens / computed tokens, or None before any batch).
TimelinePoint = tuple[float, int, "float | None"]


@dataclass
class FileOutcome:
    """What happened to one input file: ``status`` is ``"written"``, ``"skipped"`` or ``"failed"``."""

    source: AnyPath
    target: AnyPath
    status: str
    rows: int | None = None  # rows written in this run
    seconds: float | None = None  # from the first task sent to this file written
    error: str | None = None
    parts: int | None = None  # parts written in this run, for a large input written as parts


@dataclass
class ClassifyFilesResult:
    """The outcome of :func:`classify_files`.

    ``seconds`` is the classification clock: from the first task sent to the cluster to the
    last file written (model loading on the workers included; cluster start excluded).
    ``total_seconds`` covers the whole call (input checks, cluster start and shutdown).
    """

    files: list[FileOutcome]
    output: AnyPath
    rows: int = 0
    seconds: float = 0.0
    total_seconds: float = 0.0
    workers: int = 0
    label_counts: dict[Any, int] = field(default_factory=dict)
    real_tokens: int = 0
    padded_tokens: int = 0
    batches: int = 0
    truth_field: str | None = None
    correct: int = 0
    truth_counts: dict[Any, int] = field(default_factory=dict)
    known_labels: tuple[Any, ...] | None = None
    timeline: list[TimelinePoint] = field(default_factory=list)
    removed_temporaries: list[AnyPath] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Partitions the classifiers saw: ``"pandas"`` or ``"cudf"``.
    backend: str = "pandas"

    def _with(self, status: str) -> list[FileOutcome]:
        return [outcome for outcome in self.files if outcome.status == status]

    @property
    def written(self) -> list[FileOutcome]:
        return self._with("written")

    @property
    def skipped(self) -> list[FileOutcome]:
        return self._with("skipped")

    @property
    def failed(self) -> list[FileOutcome]:
        return self._with("failed")

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    @property
    def docs_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def padding_efficiency(self) -> float | None:
        """Real tokens / computed tokens (1.0: no padding computed), or None without batches."""
        return self.real_tokens / self.padded_tokens if self.padded_tokens else None

    @property
    def accuracy(self) -> float | None:
        """Correct labels over all rows with a true label (None without ``truth_field``)."""
        scored = sum(self.truth_counts.values())
        return self.correct / scored if self.truth_field and scored else None

    @property
    def unknown_truth_rows(self) -> int:
        """Rows whose true label is not one the model can predict."""
        if self.known_labels is None:
            return 0
        known = set(self.known_labels)
        return sum(count for label, count in self.truth_counts.items() if label not in known)

    @property
    def accuracy_on_known_labels(self) -> float | None:
        """Accuracy over the rows whose true label the model knows (None without truth)."""
        scored = sum(self.truth_counts.values()) - self.unknown_truth_rows
        return self.correct / scored if self.truth_field and scored > 0 else None


def classify_files(
    source: str | os.PathLike,
    output: str | os.PathLike,
    classifiers: Any = None,
    *,
    output_format: str | None = None,
    overwrite: bool = False,
    truth_field: str | None = None,
    encoding_errors: str = "strict",
    backend: str = "auto",
    client: Any = None,
    cluster: dict[str, Any] | None = None,
    progress: bool | None = None,
    echo: Callable[[str], None] | None = None,
    part_rows: int = DEFAULT_PART_ROWS,
    storage_options: dict[str, Any] | None = None,
) -> ClassifyFilesResult:
    """Classify every data file at ``source`` into its own file under the folder ``output``.

    Parameters
    ----------
    source
        A jsonl/parquet/csv/tsv file, or a folder searched recursively (names starting with
        ``.`` or ``_`` and hidden folders are skipped). A local path or an fsspec URL
        (``file://``, ``s3://``, ``gs://``, ``memory://``...; :mod:`nemo_cls_dask.storage`).
    output
        The output folder (created; never a file; must not overlap ``source``); a local
        path or an fsspec URL. ``memory://`` is seen only by this Python process: it needs
        a ``client`` whose workers run in this process (``LocalCluster(processes=False)``).
    classifiers
        One :class:`~nemo_cls_dask.DistributedDataClassifier` or a list of them, run in one
        pass (default: the packaged ``debian-topics`` model).
    output_format
        ``"parquet"`` or ``"jsonl"`` (default: each input file's own format; csv/tsv input
        is written as parquet).
    overwrite
        Redo every file; each old output is replaced only when its new version is complete.
    truth_field
        Column with true labels: the result counts correct labels and true labels.
    encoding_errors
        Invalid UTF-8 in jsonl/csv input: ``"strict"`` fails that file naming the line,
        ``"replace"`` reads such bytes as U+FFFD.
    backend
        Partitions the classifiers see: ``"pandas"``, ``"cudf"`` (needs RAPIDS and a GPU
        cluster; refused before a cluster starts where cuDF is missing) or ``"auto"``
        (default: cuDF when every worker has a GPU and cuDF is installed, else pandas).
        Files are read on the host either way; ``result.backend`` says which ran.
    client
        A ``distributed.Client`` to use (kept open). Default: start a cluster with
        :func:`~nemo_cls_dask.get_client` and ``cluster`` as its options, and close it at the end.
    progress
        Show per-partition progress (rows, docs/s, ETA) on stderr: ``None`` (default) when
        stderr is a terminal, ``True`` always, ``False`` never.
    echo
        Called with one line of text per event (a file written or failed, temporaries
        removed); default: silent.
    part_rows
        An input of more rows is written as a folder of parts of this many rows under its
        output name (``big.parquet/part.00000.parquet`` ...), each part by its own task and
        resumed per part; bounds a writer's memory to one part
        (:mod:`nemo_cls_dask.output_parts`).
    storage_options
        Options for the filesystem of URL paths (e.g. ``{"anon": True}`` or
        ``{"profile": "prod"}`` for s3fs), used to read and to write; refused with local paths.

    Raises :class:`~nemo_cls_dask.errors.NemoClsDaskError` for problems found before any
    work starts (bad paths, an unusable model, no readable input, a locked output folder).
    Files that fail later are reported in the result (``result.failed``), not raised.
    """
    from .cluster import check_cluster_options
    from .frames import check_backend

    started = time.perf_counter()
    say = echo or (lambda line: None)
    classifiers = _classifier_list(classifiers)
    source, output = locations([source, output], storage_options)
    check_output_folder(source, output)
    cluster = dict(cluster or {})
    if client is None:
        check_cluster_options(**cluster)
    in_process = [str(path) for path in (source, output) if in_process_only(path)]
    if in_process and client is None and not (cluster.get("address") or cluster.get("scheduler_file")):
        raise InputError(
            f"{in_process[0]} lives in this Python process's memory, which the worker processes of a new "
            "cluster cannot see; pass client= with workers in this process (LocalCluster(processes=False))."
        )
    if in_process and client is not None:
        _check_workers_in_this_process(client, in_process[0])
    check_backend(backend)
    jobs = plan_files(source, output, output_format)
    check_targets([job.target for job in jobs], source, output)
    for classifier in classifiers:
        classifier.describe()  # a bad model fails here, before a cluster starts
    to_check = jobs if overwrite else [job for job in jobs if not job.done]
    problems = check_inputs(to_check, _required_columns(classifiers, truth_field), encoding_errors)
    if to_check and len(problems) == len(to_check):
        listed = "\n  ".join(problems[job.target] for job in to_check[:5])
        more = f"\n  ... and {len(to_check) - 5} more" if len(to_check) > 5 else ""
        raise InputError(f"No input file can be classified (nothing was started or written):\n  {listed}{more}")
    jobs = split_large_files(jobs, part_rows, overwrite=overwrite)
    record = run_record(classifiers, "/".join(sorted({job.output_format for job in jobs})))
    result = ClassifyFilesResult(files=[], output=output, truth_field=truth_field)
    with _lock(output) as lock:
        note = lock.previous_note()
        if note:
            result.notes.append(note)
            say(note)
        result.removed_temporaries = remove_own_temporaries(
            [job.target for job in jobs] + part_temporaries(jobs) + [output / MANIFEST_NAME]
        )
        if result.removed_temporaries:
            say(f"removed {len(result.removed_temporaries)} unfinished temporary file(s) of an interrupted run")
        check_manifest(output, record, sum(job.done or has_parts(job) for job in jobs), overwrite)
        write_manifest(output, record)
        pending = jobs if overwrite else [job for job in jobs if not job.done]
        result.files = [FileOutcome(job.source, job.target, "skipped") for job in jobs if job not in pending]
        for job in pending:
            if job.target in problems:
                _fail(result, job, problems[job.target], say, len(pending))
        pending = [job for job in pending if job.target not in problems]
        units, notes, unusable = write_units(pending, overwrite)
        for note in notes:
            result.notes.append(note)
            say(note)
        for job in pending:
            if job.target in unusable:
                _fail(result, job, unusable[job.target], say, len(pending))
        pending = [job for job in pending if job.target not in unusable]
        if pending:
            own_client = client is None
            if own_client:
                from .cluster import get_client

                client = get_client(**cluster)
            try:
                if in_process and own_client:  # joined by address: its workers are known only now
                    _check_workers_in_this_process(client, in_process[0])
                _run(client, pending, units, classifiers, result, encoding_errors, progress, say, backend)
            finally:
                if own_client:
                    from .cluster import close_client

                    close_client(client)
    order = {job.target: i for i, job in enumerate(jobs)}
    result.files.sort(key=lambda outcome: order[outcome.target])
    result.total_seconds = time.perf_counter() - started
    return result


def _required_columns(classifiers: Sequence[Any], truth_field: str | None) -> list[str]:
    names = [getattr(classifier, "text_field", None) for classifier in classifiers] + [truth_field]
    return sorted({name for name in names if name})


def check_inputs(jobs: Sequence[FileJob], required: Sequence[str], encoding_errors: str = "strict") -> dict[AnyPath, str]:
    """``{target: problem}`` for the jobs whose input cannot be read or lacks a required column.

    Reads only metadata (parquet) or the first line (text formats) of each file.
    """
    from .io import check_columns

    problems: dict[AnyPath, str] = {}
    for job in jobs:
        try:
            check_columns(job.source, required, encoding_errors)
        except InputError as error:
            problems[job.target] = str(error)
    return problems


def _classifier_list(classifiers: Any) -> list[Any]:
    from .classifiers import DistributedDataClassifier

    if classifiers is None:
        return [DistributedDataClassifier(model_identifier=DEFAULT_MODEL)]
    if isinstance(classifiers, DistributedDataClassifier):
        return [classifiers]
    classifiers = list(classifiers)
    if not classifiers:
        raise InputError("classify_files needs at least one classifier.")
    return classifiers


def _check_workers_in_this_process(client: Any, where: str) -> None:
    """Refuse a cluster whose workers run in other processes than this one (they cannot see ``memory://``)."""
    pids = set(client.run(os.getpid).values())
    if pids != {os.getpid()}:
        raise InputError(
            f"{where} lives in this Python process's memory, but the cluster's workers run in other processes "
            "(nothing was read or written); use a cluster with workers in this process (LocalCluster(processes=False))."
        )


def check_output_folder(source: AnyPath, output: AnyPath) -> None:
    """Refuse an output that is a file or a link to one (never replaced by a folder) or overlaps the input."""
    if is_remote(output) or is_remote(source):
        try:
            exists_as_file = is_remote(output) and output.exists() and not output.is_dir()
        except (OSError, ValueError) as error:  # permissions, network, a URL the store rejects
            raise OutputError(f"Cannot access the output {output}: {type(error).__name__}: {error}") from error
        if exists_as_file:
            raise OutputError(f"Output {output} is a file, not a folder; give a folder (a file is never replaced by a folder).")
        check_targets([], source, output)  # the overlap rule, on the same store
        return
    if output.is_symlink() and not output.is_dir():
        raise OutputError(f"Output {output} is a link to {os.readlink(output)}, not a folder; give a folder (nothing was changed).")
    if output.exists() and not output.is_dir():
        raise OutputError(f"Output {output} is a file, not a folder; give a folder (a file is never replaced by a folder).")
    source_root, output_root = source.resolve(), output.resolve()
    if output_root == source_root or source_root in output_root.parents or output_root in source_root.parents:
        raise OutputError(f"Output {output} overlaps the input {source}; choose another output folder.")


def _lock(output: AnyPath) -> OutputLock | RemoteOutputLock:
    """Create the output folder and lock it for this run (write errors come before any compute)."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        return lock_output(output).acquire()
    except OutputError:
        raise
    except OSError as error:
        raise OutputError(f"Cannot write to the output folder {output}: {error.strerror or error} ({error.filename or output}).") from error


def _run(
    client: Any,
    pending: Sequence[FileJob],
    units: Sequence[WriteUnit],
    classifiers: list[Any],
    result: ClassifyFilesResult,
    encoding_errors: str,
    progress: bool | None,
    say: Callable[[str], None],
    backend: str = "auto",
) -> None:
    """Send every pending unit's work to the cluster at once; record each file as it is written.

    A unit is a small file or one part of a large one (:class:`~nemo_cls_dask.output_parts.WriteUnit`);
    its writer task joins only that unit's partitions.
    """
    import dask
    from distributed import as_completed

    from .classifiers import classify
    from .cluster import workers_have_gpus
    from .engine import engine_stats, reset_engine_stats
    from .frames import cudf_available, resolve_backend
    from .io import write_file_result
    from .progress import RowProgress

    truth_field = result.truth_field
    total = len(pending) + len(result.failed)
    label_column = classifiers[0].summary_column()
    result.known_labels = classifiers[0].describe().labels
    result.workers = max(1, len(client.scheduler_info().get("workers", {})))
    per_unit = max(1, math.ceil(2 * result.workers / max(1, len(units))))
    gpu_check = backend == "cudf" or (backend == "auto" and cudf_available())
    result.backend = resolve_backend(backend, gpu_cluster=gpu_check and workers_have_gpus(client))
    formats = "/".join(sorted({job.output_format for job in pending}))
    in_parts = len(units) - sum(unit.part is None for unit in units)
    say(
        f"classifying {len(pending)} file(s) -> {result.output} ({formats}) with "
        f"{', '.join(str(c.model_identifier) for c in classifiers)} on {result.workers} worker(s), "
        f"{result.backend} partitions; "
        + (f"{in_parts} part(s) of large files; " if in_parts else "")
        + f"{len(result.skipped)} already complete"
    )
    client.run(reset_engine_stats)
    start = time.perf_counter()
    assembly = FileAssembly(pending, units)
    summaries: list[dict[str, Any]] = []

    def file_done(job: FileJob) -> None:
        """Every unit of ``job`` has finished: install its parts and record the outcome."""
        errors = assembly.errors.get(job.target)
        if not errors:
            try:
                if isinstance(job, PartedFileJob):
                    install(job)
            except OSError as error:
                errors = [str(error)]
        if errors:
            _fail(result, job, "; ".join(errors), say, total)
            return
        summary = assembly.summary(job)
        summaries.append(summary)
        result.files.append(FileOutcome(job.source, job.target, "written", rows=summary["rows"],
                                        seconds=time.perf_counter() - start, parts=summary["parts"]))
        parts = f" in {summary['parts']} part(s)" if summary["parts"] is not None else ""
        say(f"[{len(result.written) + len(result.failed)}/{total}] wrote {job.target} ({summary['rows']} rows{parts})")

    for job in assembly.ready:  # a large file whose parts were all written by an earlier run
        file_done(job)
    waiting: dict[str, tuple[str, WriteUnit, int]] = {}  # future key -> (kind, unit, partition)
    parts_of: dict[AnyPath, list[Any]] = {}
    futures = []
    for unit in units:
        job = unit.job
        try:
            frame = unit.read(min_partitions=per_unit, encoding_errors=encoding_errors, backend=result.backend)
            if truth_field is not None and truth_field not in frame.columns:
                raise InputError(f"--truth-field {truth_field!r} is not a column of {job.source}; columns: {list(frame.columns)}")
            classified = classify(frame, classifiers)
        except (NemoClsDaskError, OSError, ValueError) as error:
            message = describe_failure(job.source, error, where=unit.where())
            if assembly.finish(unit, error=message):
                file_done(job)
            continue
        parts = client.compute(classified.to_delayed())
        counts = client.map(len, parts, key=[f"rows-{part.key}" for part in parts])
        write = client.submit(
            write_file_result, parts, unit.target, job.output_format, label_column, truth_field,
            key=f"write-{unit.target.name}-{dask.base.tokenize(str(unit.target), classified)}",
        )
        parts_of[unit.target] = parts
        for index, count in enumerate(counts):
            waiting[count.key] = ("partition", unit, index)
            futures.append(count)
        waiting[write.key] = ("file", unit, 0)
        futures.append(write)
    with RowProgress(_total_rows(units, classifiers), desc="classify", progress=progress) as bar:
        real = padded = 0
        for future in as_completed(futures):
            kind, unit, index = waiting.pop(future.key)
            if kind == "partition":
                if future.status == "error":
                    continue  # reported with its file
                stats = _add_counts(client.run(engine_stats).values())
                bar.advance(future.result(), real_tokens=stats.get("real_tokens", 0) - real,
                            padded_tokens=stats.get("padded_tokens", 0) - padded)
                real, padded = stats.get("real_tokens", 0), stats.get("padded_tokens", 0)
                continue
            parts = parts_of.pop(unit.target)  # the unit is done: its partitions may leave worker memory
            if future.status == "error":
                where = next((f"partition {i + 1} of {len(parts)}" for i, part in enumerate(parts) if part.status == "error"), None)
                if unit.part is not None:
                    where = unit.part.describe() + (f", {where}" if where else "")
                message = describe_failure(unit.job.source, future.exception(), where=where, classifiers=classifiers, client=client)
                done = assembly.finish(unit, error=message)
            else:
                done = assembly.finish(unit, future.result())
            if done:
                file_done(unit.job)
        result.seconds = time.perf_counter() - start
        result.timeline = list(bar.timeline)
    stats = _add_counts(client.run(engine_stats).values())
    result.real_tokens, result.padded_tokens, result.batches = (stats.get(k, 0) for k in ("real_tokens", "padded_tokens", "batches"))
    result.rows = sum(summary["rows"] for summary in summaries)
    result.label_counts = dict(_add_counts(summary.get("labels", {}) for summary in summaries))
    if truth_field is not None:
        result.correct = sum(summary.get("correct", 0) for summary in summaries)
        result.truth_counts = dict(_add_counts(summary.get("truth", {}) for summary in summaries))


def _fail(result: ClassifyFilesResult, job: FileJob, message: str, say: Callable[[str], None], total: int) -> None:
    result.files.append(FileOutcome(job.source, job.target, "failed", error=message))
    say(f"[{len(result.written) + len(result.failed)}/{total}] FAILED {job.source}: {message}")


def _add_counts(counts: Any) -> Counter:
    """Sum ``{key: count}`` dicts (per file, or per worker) into one."""
    total: Counter = Counter()
    for part in counts:
        total.update(part)
    return total


def _total_rows(units: Sequence[WriteUnit], classifiers: Sequence[Any]) -> int | None:
    """Rows the progress bar counts to: known for parts and parquet inputs; None (no ETA) otherwise.

    Also None when a classifier filters rows, since the bar counts rows written.
    """
    if any(getattr(classifier, "filter_by", None) for classifier in classifiers):
        return None
    rows = [unit.rows for unit in units]
    return None if any(count is None for count in rows) else sum(rows)  # type: ignore[arg-type]


def describe_failure(
    path: AnyPath,
    error: BaseException | None,
    *,
    where: str | None = None,
    classifiers: Sequence[Any] = (),
    client: Any = None,
) -> str:
    """One file's error in words: the line of invalid UTF-8, or the partition that killed its worker."""
    from .io import find_invalid_utf8

    text = f"{type(error).__name__}: {error}"
    if isinstance(error, UnicodeDecodeError) or "codec can't decode" in str(error):
        found = find_invalid_utf8(path)
        if found is not None:
            return (
                f"invalid UTF-8 at line {found[0]} (byte {found[1]}) of {path}; fix the file or pass "
                f"--encoding-errors replace to read such bytes as U+FFFD"
            )
    if type(error).__name__ == "KilledWorker":
        from .cluster import memory_advice

        place = f"{where} of {path}" if where else str(path)
        return f"{place} killed its worker process repeatedly ({error}). {memory_advice(classifiers, client)}"
    if where:
        text = f"{where}: {text}"
    return text
