"""A one-page HTML report of a classified frame: what was predicted, how sure, how fast, how right.

:func:`write_report` writes a single self-contained HTML file (plots are embedded PNGs, no
scripts, no external files), so it can be mailed, attached to a ticket or opened offline:

* label distribution (nulls shown as ``<null>``);
* a histogram of the top probability per predicted label (with ``score_field``);
* throughput and padding efficiency over the run (with a ``timeline`` such as
  :attr:`nemo_cls_dask.progress.RowProgress.timeline`);
* with a ``truth_field``: accuracy on all rows with a true label, on the rows whose true
  label the model can predict (``labels``), the count of the others, and a confusion matrix.

Only the label, score and truth columns are read (a dask frame computes just those).
"""

from __future__ import annotations

import base64
import html
import os
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from . import frames
from .errors import InputError
from .storage import AnyPath, local_path, location

__all__ = ["check_report_path", "write_report", "write_run_report"]

NULL_LABEL = "<null>"
MAX_BARS = 30  # label distribution: the most frequent labels, the rest as one bar
MAX_HISTOGRAMS = 12  # confidence: the most frequent predicted labels
MAX_MATRIX = 30  # confusion matrix: labels per side before the rest are grouped
OTHER = "(other labels)"
GENERATOR = '<meta name="generator" content="nemo_cls_dask.report">'  # marks a page this module wrote


@dataclass
class _Columns:
    """The report's inputs as plain Python values, one entry per row."""

    predicted: list[Any]
    top_scores: np.ndarray | None
    truth: list[Any] | None

    @property
    def multi_label(self) -> bool:
        return any(isinstance(value, (list, tuple)) for value in self.predicted)


def write_report(
    frame: Any,
    path: str | os.PathLike[str],
    *,
    label_field: str,
    score_field: str | None = None,
    truth_field: str | None = None,
    labels: Sequence[str] | None = None,
    timeline: Sequence[Sequence[float | None]] | None = None,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an HTML report of ``frame``'s predictions to ``path`` and return the path.

    ``frame``: a pandas, dask or cuDF frame holding classifier output. ``score_field``: the
    probabilities column (a list per row, the top one is plotted) or a float column.
    ``labels``: the model's labels (``classifier.describe().labels``); true labels outside
    them are counted as ones the model cannot predict. ``timeline``: rows of ``(seconds,
    rows_done, padding_efficiency or None)``. ``path`` must not be a folder or a link; an
    existing file is replaced when it is a report this function wrote, any other file only
    with ``overwrite=True``. The file is written atomically.
    """
    path = local_path(path, "Report path")
    check_report_path(path, overwrite)
    fields = {"label_field": label_field, "score_field": score_field, "truth_field": truth_field}
    _check_columns(frame, fields)
    points = _check_timeline(timeline)
    if labels is not None:
        labels = _check_labels(labels)
    columns = _read_columns(frame, label_field, score_field, truth_field)
    page = _render(columns, fields, labels, points, title or f"Classification report: {label_field}")
    _write_atomic(path, page)
    return path


# ---------------------------------------------------------------------------- checks


def write_run_report(result: Any, path: str | os.PathLike[str], *, label_field: str, score_field: str | None = None,
                     truth_field: str | None = None, labels: Sequence[str] | None = None, title: str | None = None,
                     overwrite: bool = False) -> Path:
    """The report of a :func:`~nemo_cls_dask.classify_files` run, from its output files.

    Reads only the label, score and truth columns of every complete output (written now or
    kept from an earlier run); the timeline is this run's. Returns the page's path.
    """
    path = local_path(path, "Report path")
    check_report_path(path, overwrite)
    columns = [c for c in dict.fromkeys((label_field, score_field, truth_field)) if c is not None]
    targets = [outcome.target for outcome in result.files if outcome.status in ("written", "skipped")]
    if not targets:
        raise InputError(f"No output file to report on under {result.output}.")
    frame = pd.concat([_read_output_columns(location(target), columns) for target in targets], ignore_index=True)
    return write_report(frame, path, label_field=label_field, score_field=score_field, truth_field=truth_field,
                        labels=labels, timeline=result.timeline or None, title=title, overwrite=overwrite)


def _read_output_columns(target: AnyPath, columns: list[str]) -> pd.DataFrame:
    """Just ``columns`` of one output: a file (local or remote), or a large input's folder of parts, in order."""
    from .output_parts import output_files

    files = output_files(target)
    if len(files) != 1 or files[0] != target:
        return pd.concat([_read_file_columns(path, columns) for path in files], ignore_index=True)
    return _read_file_columns(target, columns)


def _read_file_columns(target: AnyPath, columns: list[str]) -> pd.DataFrame:
    """Just ``columns`` of one output file (parquet: only those columns are read), local or remote."""
    if target.suffix == ".parquet":
        import pyarrow.parquet as pq

        with target.open("rb") as handle:
            available = pq.read_schema(handle).names
            missing = [c for c in columns if c not in available]
            if missing:
                raise InputError(f"{target} has no column(s) {missing} for the report; columns: {available}")
            # ignore_metadata: pandas cannot rebuild list<float> dtypes from the files' pandas metadata
            return pq.read_table(handle, columns=columns).to_pandas(ignore_metadata=True)
    with target.open("rb") as handle:
        frame = pd.read_json(handle, lines=True, dtype=False)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{target} has no column(s) {missing} for the report; columns: {list(frame.columns)}")
    return frame[columns]


def check_report_path(path: str | os.PathLike[str], overwrite: bool = False) -> None:
    """Refuse a report path that is a link, a folder, not ``.html``, or someone else's file.

    Call it before long work starts (the CLI does, before the cluster): an existing file is
    replaced only when it is a report this module wrote, or with ``overwrite``.
    """
    path = local_path(path, "Report path")
    if path.is_symlink():
        raise InputError(f"Report path {path} is a symbolic link; give the path of a regular file (links are not followed).")
    if path.is_dir():
        raise InputError(f"Report path {path} is a folder; give a file name such as {path / 'report.html'}.")
    if path.exists() and not overwrite and not _is_own_report(path):
        raise InputError(f"Report path {path} exists and is not a report this package wrote; "
                         f"pass overwrite=True (--overwrite) to replace it.")
    if path.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"Report path {path} should end in .html (it is an HTML page).")


def _is_own_report(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return GENERATOR in handle.read(2048)
    except OSError:
        return False


def _check_columns(frame: Any, fields: dict[str, str | None]) -> None:
    available = list(frame.columns)
    for option, column in fields.items():
        if column is not None and column not in available:
            raise InputError(f"{option}={column!r} is not a column of the frame; columns: {available}")


def _check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    if isinstance(labels, str) or not all(isinstance(label, str) for label in labels):
        raise InputError(f"labels must be a sequence of label names (str), got {labels!r}")
    return tuple(labels)


def _check_timeline(timeline: Sequence[Sequence[float | None]] | None) -> np.ndarray | None:
    """The timeline as a float array ``(n, 3)`` (NaN for missing padding), checked."""
    if timeline is None:
        return None
    points = []
    for index, row in enumerate(timeline):
        if len(row) != 3:
            raise InputError(f"timeline rows are (seconds, rows_done, padding); row {index} is {row!r}")
        seconds, rows_done, padding = row
        points.append((float(seconds), float(rows_done), np.nan if padding is None else float(padding)))
    array = np.asarray(points, dtype=float).reshape(-1, 3)
    if len(array) and (np.any(np.diff(array[:, 0]) < 0) or np.any(np.diff(array[:, 1]) < 0)):
        raise InputError("timeline seconds and rows_done must never decrease (rows in the order they happened).")
    return array


# ---------------------------------------------------------------------------- reading


def _read_columns(frame: Any, label_field: str, score_field: str | None, truth_field: str | None) -> _Columns:
    names = list(dict.fromkeys(c for c in (label_field, score_field, truth_field) if c is not None))
    part = frame[names]
    if frames.is_dask(part):
        part = part.compute()
    if frames.is_cudf(part):
        part = part.to_pandas()
    predicted = _python_values(part[label_field])
    scores = _top_scores(_python_values(part[score_field])) if score_field is not None else None
    truth = _python_values(part[truth_field]) if truth_field is not None else None
    return _Columns(predicted, scores, truth)


def _python_values(series: pd.Series) -> list[Any]:
    """Plain Python values (lists for list columns), with every kind of null as None."""
    if isinstance(series.dtype, pd.ArrowDtype):
        values = pa.array(series).to_pylist()
    else:
        values = series.astype(object).tolist()
    return [None if _is_null(value) else (list(value) if isinstance(value, (np.ndarray, tuple)) else value) for value in values]


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and value != value


def _top_scores(values: list[Any]) -> np.ndarray:
    """The highest probability of each row (a list column), or the value (a float column)."""
    top = np.full(len(values), np.nan)
    for index, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, list):
            if value:
                top[index] = max(value)
        else:
            try:
                top[index] = float(value)
            except (TypeError, ValueError) as error:
                raise InputError(f"score_field values must be probabilities (a list per row or a float), got {value!r}") from error
    return top


# ---------------------------------------------------------------------------- statistics


def _label_name(value: Any) -> str:
    return NULL_LABEL if value is None else str(value)


def _label_counts(predicted: list[Any]) -> Counter:
    counts: Counter = Counter()
    for value in predicted:
        if isinstance(value, list):
            counts.update(_label_name(v) for v in value)
        else:
            counts[_label_name(value)] += 1
    return counts


def _accuracy(columns: _Columns, labels: tuple[str, ...] | None) -> dict[str, Any]:
    """Accuracy over rows with a true label, and over those whose label the model knows."""
    pairs = [(p, t) for p, t in zip(columns.predicted, columns.truth) if t is not None]
    result: dict[str, Any] = {"with_truth": len(pairs), "null_truth": len(columns.truth) - len(pairs)}
    result["correct"] = sum(_same(p, t) for p, t in pairs)
    if labels is not None:
        known = set(labels)
        known_pairs = [(p, t) for p, t in pairs if _truth_known(t, known)]
        result["known"] = len(known_pairs)
        result["unknown"] = len(pairs) - len(known_pairs)
        result["known_correct"] = sum(_same(p, t) for p, t in known_pairs)
        result["unknown_labels"] = Counter(_label_name(t) for p, t in pairs if not _truth_known(t, known))
    return result


def _same(predicted: Any, truth: Any) -> bool:
    if isinstance(predicted, list) or isinstance(truth, list):
        as_set = lambda v: set(v) if isinstance(v, list) else ({v} if v is not None else set())  # noqa: E731
        return as_set(predicted) == as_set(truth)
    return predicted is not None and str(predicted) == str(truth)


def _truth_known(truth: Any, known: set[str]) -> bool:
    return all(str(t) in known for t in truth) if isinstance(truth, list) else str(truth) in known


def _confusion(columns: _Columns, labels: tuple[str, ...] | None) -> tuple[np.ndarray, list[str], list[str]]:
    """Counts of (true, predicted) label pairs; rare labels past ``MAX_MATRIX`` are grouped."""
    pairs = [(_label_name(t), _label_name(p)) for p, t in zip(columns.predicted, columns.truth) if t is not None]
    truth_counts = Counter(t for t, _ in pairs)
    predicted_counts = Counter(p for _, p in pairs)
    order = list(labels) if labels is not None else []
    order += sorted(set(truth_counts) | set(predicted_counts) - set(order) - {NULL_LABEL}, key=lambda n: (-truth_counts[n], n))
    order = list(dict.fromkeys(order))
    truth_names = _keep_top([n for n in order if truth_counts[n]], truth_counts)
    predicted_names = _keep_top([n for n in order if predicted_counts[n]], predicted_counts)
    if predicted_counts[NULL_LABEL]:
        predicted_names.append(NULL_LABEL)
    row_of = {n: i for i, n in enumerate(truth_names)}
    column_of = {n: i for i, n in enumerate(predicted_names)}
    matrix = np.zeros((len(truth_names), len(predicted_names)), dtype=np.int64)
    for t, p in pairs:
        matrix[row_of.get(t, row_of.get(OTHER, 0)), column_of.get(p, column_of.get(OTHER, 0))] += 1
    return matrix, truth_names, predicted_names


def _keep_top(names: list[str], counts: Counter) -> list[str]:
    if len(names) <= MAX_MATRIX:
        return names
    top = set(sorted(names, key=lambda n: -counts[n])[: MAX_MATRIX - 1])
    return [n for n in names if n in top] + [OTHER]


# ---------------------------------------------------------------------------- HTML

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1100px; padding: 0 1rem; color: #1d2733; background: #fff; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; border-bottom: 1px solid #d9dee4; padding-bottom: .2rem; margin-top: 2rem; }
p.note { color: #5b6773; font-size: .9rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { padding: .25rem .7rem; border-bottom: 1px solid #e6e9ed; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: .6rem 0; }
.headline { font-size: 1.1rem; }
"""


def _render(columns: _Columns, fields: dict[str, str | None], labels: tuple[str, ...] | None,
            timeline: np.ndarray | None, title: str) -> str:
    from . import report_plots as plots

    rows = len(columns.predicted)
    counts = _label_counts(columns.predicted)
    parts = [f"<h1>{_e(title)}</h1>", _summary(columns, fields, counts, timeline)]
    parts.append("<h2>Predicted labels</h2>")
    if counts:
        shown = counts.most_common(MAX_BARS)
        rest = sum(counts.values()) - sum(c for _, c in shown)
        names = [n for n, _ in shown] + ([OTHER] if rest else [])
        values = [c for _, c in shown] + ([rest] if rest else [])
        parts.append(_image(plots.label_distribution_png(names, values), f"bar chart of predicted label counts in column {fields['label_field']}"))
        parts.append(_details("label counts", ["label", "rows", "share"],
                              [(n, f"{c:,}", f"{c / max(sum(counts.values()), 1):.1%}") for n, c in counts.most_common()]))
    else:
        parts.append('<p class="note">The frame has no rows.</p>')
    parts.append(_confidence_section(columns, fields, counts, plots))
    if timeline is not None:
        parts.append("<h2>Throughput and padding over the run</h2>")
        if len(timeline) >= 2:
            parts.append(_image(plots.timeline_png(timeline[:, 0], timeline[:, 1], timeline[:, 2]), "throughput and padding efficiency over the run"))
        else:
            parts.append('<p class="note">The timeline has fewer than two points.</p>')
    if columns.truth is not None:
        parts.append(_truth_section(columns, fields, labels, plots))
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n{GENERATOR}\n<title>{_e(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
            f'<p class="note">{rows:,} rows; written by nemo_cls_dask.report.</p>\n</body>\n</html>\n')


def _summary(columns: _Columns, fields: dict[str, str | None], counts: Counter, timeline: np.ndarray | None) -> str:
    rows = len(columns.predicted)
    nulls = sum(value is None for value in columns.predicted)
    table = [("rows", f"{rows:,}"), ("rows with a label", f"{rows - nulls:,}"),
             (f"rows with a null label ({NULL_LABEL}: no usable text)", f"{nulls:,}"),
             ("distinct predicted labels", f"{len(counts) - (NULL_LABEL in counts):,}")]
    if timeline is not None and len(timeline) >= 2 and timeline[-1, 0] > timeline[0, 0]:
        seconds = timeline[-1, 0] - timeline[0, 0]
        table.append(("run time (timeline)", f"{seconds:,.1f} s"))
        table.append(("throughput (timeline)", f"{(timeline[-1, 1] - timeline[0, 1]) / seconds:,.1f} docs/s"))
        padding = timeline[:, 2][~np.isnan(timeline[:, 2])]
        if len(padding):
            table.append(("padding efficiency (real / computed tokens)", f"{padding[-1]:.3f}"))
    columns_used = ", ".join(f"{option} = {_e(name)}" for option, name in fields.items() if name is not None)
    return f'<p class="note">Columns: {columns_used}.</p>' + _table(None, table)


def _confidence_section(columns: _Columns, fields: dict[str, str | None], counts: Counter, plots: Any) -> str:
    parts = ["<h2>Confidence per predicted label</h2>"]
    if columns.top_scores is None:
        parts.append('<p class="note">No score_field given: pass the probabilities column to see how sure the model was.</p>')
        return "\n".join(parts)
    if columns.multi_label:
        parts.append('<p class="note">Multi-label output: a row has several labels, so there is no single top probability per label.</p>')
        return "\n".join(parts)
    by_label: dict[str, list[float]] = {}
    for value, score in zip(columns.predicted, columns.top_scores):
        if value is not None and not np.isnan(score):
            by_label.setdefault(_label_name(value), []).append(float(score))
    if not by_label:
        parts.append('<p class="note">No row has both a label and a score.</p>')
        return "\n".join(parts)
    names = [n for n, _ in counts.most_common() if n in by_label]
    shown = names[:MAX_HISTOGRAMS]
    if len(names) > len(shown):
        parts.append(f'<p class="note">The {len(shown)} most frequent of {len(names)} predicted labels; all are in the table below.</p>')
    parts.append(_image(plots.confidence_png({n: np.asarray(by_label[n]) for n in shown}), "histograms of the top probability per predicted label"))
    rows = [(n, f"{len(by_label[n]):,}", f"{np.median(by_label[n]):.3f}", f"{np.mean(np.asarray(by_label[n]) < 0.5):.1%}") for n in names]
    parts.append(_details("confidence per label", ["label", "rows", "median top probability", "rows below 0.5"], rows))
    return "\n".join(parts)


def _truth_section(columns: _Columns, fields: dict[str, str | None], labels: tuple[str, ...] | None, plots: Any) -> str:
    stats = _accuracy(columns, labels)
    parts = [f"<h2>Accuracy against {_e(fields['truth_field'])}</h2>"]
    if not stats["with_truth"]:
        parts.append(f'<p class="note">No row has a value in {_e(fields["truth_field"])}.</p>')
        return "\n".join(parts)
    accuracy = stats["correct"] / stats["with_truth"]
    table = [("accuracy, all rows with a true label", f"{accuracy:.3f}", f"{stats['correct']:,} of {stats['with_truth']:,}")]
    if labels is not None:
        known = stats["known"]
        known_accuracy = f"{stats['known_correct'] / known:.3f}" if known else "n/a"
        table.append(("accuracy, rows whose true label the model can predict", known_accuracy, f"{stats['known_correct']:,} of {known:,}"))
        table.append(("rows whose true label the model cannot predict", f"{stats['unknown']:,}", f"{stats['unknown'] / stats['with_truth']:.1%} of rows with a true label"))
    if stats["null_truth"]:
        table.append(("rows without a true label (not counted)", f"{stats['null_truth']:,}", ""))
    parts.append(_table(None, table, css_class="headline"))
    if labels is None:
        parts.append('<p class="note">Pass labels= (the model\'s labels) to separate rows whose true label the model cannot predict.</p>')
    elif stats["unknown"]:
        unknown = ", ".join(f"{_e(n)} ({c:,})" for n, c in stats["unknown_labels"].most_common(10))
        parts.append(f'<p class="note">True labels outside the model\'s {len(labels)} labels: {unknown}'
                     f'{" ..." if len(stats["unknown_labels"]) > 10 else ""}.</p>')
    if columns.multi_label:
        parts.append('<p class="note">Multi-label output: a row counts as correct when its label set equals the true set; no confusion matrix.</p>')
        return "\n".join(parts)
    matrix, truth_names, predicted_names = _confusion(columns, labels)
    parts.append("<h2>Confusion matrix</h2>")
    parts.append('<p class="note">Rows: true labels; columns: predicted labels. Colour is the share of the true label\'s rows, numbers are row counts.</p>')
    parts.append(_image(plots.confusion_png(matrix, truth_names, predicted_names), "confusion matrix of true against predicted labels"))
    return "\n".join(parts)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _image(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _table(header: Sequence[str] | None, rows: Sequence[Sequence[Any]], css_class: str | None = None) -> str:
    """An HTML table; numbers are right-aligned. ``header`` None: no header row."""
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join(
        "<tr>" + "".join(f'<td class="number">{_e(v)}</td>' if _numeric(v) else f"<td>{_e(v)}</td>" for v in row) + "</tr>"
        for row in rows
    )
    cls = f' class="{css_class}"' if css_class else ""
    return f"<table{cls}>{head}{body}</table>"


def _numeric(value: Any) -> bool:
    text = str(value).replace(",", "").rstrip("%").replace(" s", "").replace(" docs/s", "")
    try:
        float(text)
    except ValueError:
        return False
    return True


def _details(summary: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    return f"<details><summary>{_e(summary)}</summary>{_table(header, rows)}</details>"


def _write_atomic(path: Path, page: str) -> None:
    """Write next to ``path`` under a fresh hidden name, then rename: readers never see half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(temp, "x", encoding="utf-8") as handle:  # "x": never reuse an existing file
            handle.write(page)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
