"""How well a student copies its teacher, and how it does against the truth.

Every measure is taken on the held-out rows only (rows with text that the teacher
labelled). Single-label: ``agreement`` (same label as the teacher) and ``accuracy``.
Multi-label: ``agreement`` (same label set), ``agreement_micro_f1`` (the teacher's sets as
the reference) and ``micro_f1`` against the truth. Regression (first output when there
are several): ``agreement_r2`` / ``agreement_mae`` against the teacher's values, and
``r2`` / ``mae`` against the truth.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd


def _label_set(value: Any) -> frozenset:
    if isinstance(value, (list, tuple, np.ndarray)):
        return frozenset(str(v) for v in value)
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return frozenset()
    return frozenset([str(value)])


def _micro_f1(reference: list[frozenset], predicted: list[frozenset]) -> float:
    hits = sum(len(r & p) for r, p in zip(reference, predicted))
    total = sum(len(r) for r in reference) + sum(len(p) for p in predicted)
    return 2.0 * hits / total if total else 1.0


def _r2(reference: np.ndarray, predicted: np.ndarray) -> float:
    spread = float(((reference - reference.mean()) ** 2).sum())
    return 1.0 - float(((reference - predicted) ** 2).sum()) / spread if spread > 0 else float("nan")


def agreement(problem: str, student_labels: list[Any], student_values: np.ndarray, teacher_labels: list[Any],
              teacher_values: np.ndarray) -> dict[str, float]:
    """The student against the teacher on the same rows (see the module docstring)."""
    if problem == "regression":
        s, t = student_values[:, 0].astype(np.float64), teacher_values[:, 0].astype(np.float64)
        return {"agreement_r2": _r2(t, s), "agreement_mae": float(np.abs(s - t).mean()) if len(s) else float("nan")}
    if problem == "multi_label":
        s_sets, t_sets = [_label_set(v) for v in student_labels], [_label_set(v) for v in teacher_labels]
        same = float(np.mean([a == b for a, b in zip(s_sets, t_sets)])) if s_sets else float("nan")
        return {"agreement": same, "agreement_micro_f1": _micro_f1(t_sets, s_sets)}
    same = [str(a) == str(b) for a, b in zip(student_labels, teacher_labels)]
    return {"agreement": float(np.mean(same)) if same else float("nan")}


def against_truth(problem: str, labels: list[Any], values: np.ndarray, truth: list[Any]) -> dict[str, float]:
    """A model's outputs against the truth column, on the rows whose truth is not null."""
    known = [i for i, t in enumerate(truth) if isinstance(t, (list, tuple, np.ndarray)) or not pd.isna(t)]
    if not known:
        return {}
    if problem == "regression":
        ref = np.asarray([float(truth[i]) for i in known])
        got = values[known, 0].astype(np.float64)
        return {"r2": _r2(ref, got), "mae": float(np.abs(ref - got).mean()), "truth_rows": len(known)}
    if problem == "multi_label":
        return {"micro_f1": _micro_f1([_label_set(truth[i]) for i in known], [_label_set(labels[i]) for i in known]),
                "truth_rows": len(known)}
    return {"accuracy": float(np.mean([str(labels[i]) == str(truth[i]) for i in known])), "truth_rows": len(known)}


@dataclass
class DistillResult:
    """What :func:`~nemo_cls_dask.distill` did and how well the student copies the teacher.

    ``student``: the fitted student; ``path``: where it is saved; ``targets``: ``"soft"``
    (teacher probabilities), ``"hard"`` (teacher labels) or ``"values"`` (regression);
    ``student_metrics`` / ``teacher_metrics``: held-out measures (:mod:`.report`);
    ``student_docs_per_s`` / ``teacher_docs_per_s``: both operators over the same held-out
    rows on the same scheduler, models already loaded (None when not measured);
    ``teacher_partitions_run`` / ``teacher_partitions_reused``: what the teacher paid in
    this run and what an earlier, interrupted run had already written.
    """

    student: Any = field(repr=False)
    path: str
    problem: str
    targets: str
    labels: tuple[str, ...] | None
    pool_rows: int
    null_text_rows: int
    train_rows: int
    heldout_rows: int
    student_metrics: dict[str, float]
    teacher_metrics: dict[str, float]
    student_docs_per_s: float | None
    teacher_docs_per_s: float | None
    speed_rows: int
    teacher_partitions_run: list[int]
    teacher_partitions_reused: list[int]
    teacher_seconds: float
    fit_seconds: float
    notes: list[str] = field(default_factory=list)
    #: True-labelled rows (``labelled=``) trained on besides the ``train_rows`` teacher-labelled ones.
    labelled_rows: int = 0

    @property
    def speedup(self) -> float | None:
        """Student docs/s over teacher docs/s (None when speed was not measured)."""
        if not self.student_docs_per_s or not self.teacher_docs_per_s:
            return None
        return self.student_docs_per_s / self.teacher_docs_per_s

    def to_dict(self) -> dict[str, Any]:
        """Everything but the student object, JSON-ready."""
        out = asdict(self)
        out.pop("student")
        out["speedup"] = self.speedup
        out["labels"] = list(self.labels) if self.labels is not None else None
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=float)

    def summary(self) -> str:
        """A few lines for people: agreement, accuracy, speed."""
        lines = [f"student saved to {self.path} ({self.problem}, {self.targets} targets, {self.train_rows} training rows"
                 f"{f' + {self.labelled_rows} true-labelled' if self.labelled_rows else ''}, "
                 f"{self.heldout_rows} held-out rows)"]
        lines.append("held-out, student vs teacher: " + ", ".join(f"{k} {v:.4f}" for k, v in self.student_metrics.items()
                                                                    if k.startswith("agreement")))
        truth = {k: v for k, v in self.student_metrics.items() if not k.startswith("agreement") and k != "truth_rows"}
        if truth:
            lines.append("against the truth: student " + ", ".join(f"{k} {v:.4f}" for k, v in truth.items())
                         + "; teacher " + ", ".join(f"{k} {v:.4f}" for k, v in self.teacher_metrics.items() if k != "truth_rows"))
        if self.speedup is not None:
            lines.append(f"speed on {self.speed_rows} held-out rows: student {self.student_docs_per_s:.1f} docs/s, teacher "
                         f"{self.teacher_docs_per_s:.1f} docs/s ({self.speedup:.1f}x)")
        lines.append(f"teacher ran on {len(self.teacher_partitions_run)} partition(s) in {self.teacher_seconds:.1f}s; "
                     f"{len(self.teacher_partitions_reused)} reused from the work folder")
        return "\n".join(lines + self.notes)
