"""Students: what they are, how they learn from a teacher, and how they are saved.

Soft targets (single-label teachers) are trained by *expansion*: a text whose teacher
probabilities are ``p`` becomes one row per class ``k`` with ``p_k >= soft_min_prob``,
labelled ``k`` and weighted ``p_k`` (renormalized over the kept classes). The weighted
cross-entropy of those rows is exactly the cross-entropy against the soft target, so any
estimator that takes per-row sample weights learns the teacher's probabilities, with no
new loss in the estimators. Who can:

=============================  ==========================  ===========================
student                        single-label                multi-label / regression
=============================  ==========================  ===========================
``SklearnTextClassifier``      soft, if its last step's    multi-label: soft per label
                               ``fit`` takes               for a ``OneVsRestClassifier``
                               ``sample_weight``           whose estimator takes
                                                           ``sample_weight``, else hard;
                                                           regression: not supported
``TextClassifier``             soft (``sample_weight``)    multi-label: soft (label-
                                                           probability dicts);
                                                           regression: the teacher's values
``KimCNNClassifier``           hard (no sample weights)    the same as ``TextClassifier``
=============================  ==========================  ===========================

Multi-label soft targets, for a one-vs-rest student: each label's binary model is fitted
on every text twice, once as "on" weighted by the teacher's probability ``p_k`` and once
as "off" weighted ``1 - p_k``, which is exactly the binary cross-entropy against ``p_k``.
The transformer and KimCNN students take the probabilities directly: their label column
holds one ``{label: p_k}`` dict per text (soft labels, :mod:`nemo_cls_dask.train.data`),
and their loss is the binary cross-entropy against each ``p_k``.

A scikit-learn pipeline's transformers (the TF-IDF vectorizer) are fitted on each text
once; only its last step sees the expanded rows, so document frequencies are not skewed.

Saving: KimCNN and transformer students with ``save_pretrained``; a TF-IDF + linear student
in the pickle-free ``tfidf-linear`` layout (:mod:`nemo_cls_dask.lightweight.tfidf_export`),
so every preset loads in :class:`~nemo_cls_dask.DistributedDataClassifier` and the CLI. Only
a user's own scikit-learn pipeline that the layout cannot hold is written as a joblib pickle
(:data:`SKLEARN_FILE`, trusted use only; the result's notes say so).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..classifiers.base import DistributedDataClassifier
from ..errors import InputError
from ..lightweight.kimcnn_estimator import KimCNNClassifier
from ..lightweight.sklearn_adapter import SklearnTextClassifier
from ..train.estimator import TextClassifier
from .split import unit_hashes

#: Ready-made students, by name (the CLI's ``--student``).
from .names import PRESETS, TARGETS  # noqa: E402,F401  (public here too)
SKLEARN_FILE = "student.joblib"
STUDENT_LABEL = "__student_label__"
STUDENT_SCORES = "__student_scores__"


def make_student(name: str, problem: str, *, seed: int = 0, verbose: bool = False) -> Any:
    """A ready-made, unfitted student for a ``problem`` (see :data:`PRESETS`)."""
    if name == "tfidf":
        if problem == "regression":
            raise InputError("The 'tfidf' student is a classifier; for a regression teacher use 'kimcnn-word', "
                             "'kimcnn-char', 'minilm-head' or 'minilm'.")
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.pipeline import make_pipeline

        linear = LogisticRegression(C=10.0, max_iter=2000)
        final = OneVsRestClassifier(linear) if problem == "multi_label" else linear
        vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
        return SklearnTextClassifier(make_pipeline(vectorizer, final), problem=problem)
    if name in ("kimcnn-word", "kimcnn-char"):
        level = name.split("-")[1]
        sizes = {"word": dict(max_len=128, embedding_dim=64), "char": dict(max_len=384, embedding_dim=16)}[level]
        return KimCNNClassifier(problem=problem, level=level, epochs=6, seed=seed, verbose=verbose, **sizes)
    if name == "minilm-head":
        return TextClassifier(problem=problem, frozen_backbone=True, max_len=128, epochs=30, learning_rate=2e-3,
                              max_batch_rows=64, seed=seed, verbose=verbose)
    if name == "minilm":
        return TextClassifier(problem=problem, max_len=128, epochs=3, learning_rate=1e-4, head_learning_rate=1e-3,
                              max_batch_rows=32, seed=seed, verbose=verbose)
    raise InputError(f"Unknown student {name!r}; choose one of {PRESETS}, or pass an estimator.")


def prepare_student(student: Any, problem: str, *, seed: int = 0) -> Any:
    """An unfitted copy of ``student`` (a preset name or an estimator) for a ``problem`` teacher."""
    from sklearn.base import clone

    if isinstance(student, str):
        return make_student(student, problem, seed=seed)
    if not isinstance(student, (SklearnTextClassifier, TextClassifier, KimCNNClassifier)):
        raise InputError(f"student must be one of {PRESETS} or a SklearnTextClassifier, KimCNNClassifier or "
                         f"TextClassifier; got a {type(student).__name__}.")
    if isinstance(student, SklearnTextClassifier):
        if problem == "regression":
            raise InputError("A SklearnTextClassifier student is a classifier and the teacher is a regression model; "
                             "use a KimCNNClassifier or TextClassifier with problem='regression'.")
        if student.prefit:
            raise InputError("The student must be unfitted (prefit=False): distillation trains it.")
    if student.problem != problem:
        raise InputError(f"The teacher is a {problem} model and the student a {student.problem} one; give the "
                         f"student problem={problem!r}.")
    return clone(student)


def takes_soft_targets(student: Any) -> bool:
    """Whether ``student`` can learn probabilities (weighted expanded rows; see the module doc)."""
    from sklearn.utils.validation import has_fit_parameter

    if student.problem == "single_label":
        if isinstance(student, TextClassifier):
            return True
        if isinstance(student, SklearnTextClassifier):
            return has_fit_parameter(_final_step(student.estimator), "sample_weight")
    if student.problem == "multi_label" and isinstance(student, (TextClassifier, KimCNNClassifier)):
        return True
    if student.problem == "multi_label" and isinstance(student, SklearnTextClassifier):
        from sklearn.multiclass import OneVsRestClassifier

        steps = getattr(student.estimator, "steps", None) or []
        final = _final_step(student.estimator)
        return (len(steps) > 1 and isinstance(final, OneVsRestClassifier)
                and has_fit_parameter(final.estimator, "sample_weight"))
    return False


def choose_targets(student: Any, targets: str) -> str:
    """``"soft"``, ``"hard"`` or ``"values"`` (regression) for ``targets`` = auto/soft/hard."""
    if targets not in TARGETS:
        raise InputError(f"targets must be one of {TARGETS}, got {targets!r}.")
    if student.problem == "regression":
        return "values"
    soft = takes_soft_targets(student)
    if targets == "soft" and not soft:
        raise InputError(
            f"{type(student).__name__} ({student.problem}) cannot take soft targets: only TextClassifier "
            f"students, multi-label KimCNN students, scikit-learn students whose last step's fit takes "
            f"sample_weight and multi-label scikit-learn students ending in a OneVsRestClassifier of such an "
            f"estimator can. "
            f"Pass targets='hard' or 'auto'."
        )
    return "soft" if soft and targets != "hard" else "hard"


def expand_soft(texts: list[str], proba: np.ndarray, labels: tuple[str, ...], min_prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``(text index, label, weight)``: one per kept class of each text (see module doc).

    The best class is always kept; each text's weights sum to 1.
    """
    keep = proba >= min_prob
    keep[np.arange(len(proba)), proba.argmax(axis=1)] = True
    weights = np.where(keep, proba, 0.0)
    weights = weights / weights.sum(axis=1, keepdims=True)
    rows, cols = np.nonzero(keep)
    return rows, np.asarray(labels, dtype=object)[cols], weights[rows, cols]


def fit_student(student: Any, texts: list[str], scores: np.ndarray, labels: Any, teacher_problem: str,
                output_names: tuple[str, ...], kind: str, *, seed: int, soft_min_prob: float) -> Any:
    """Train ``student`` on the teacher's outputs; returns the fitted student.

    ``scores``: the teacher's probabilities (or values) per text; ``labels``: its decided
    labels (label lists for multi-label); ``kind``: from :func:`choose_targets`.
    """
    if kind == "values":
        frame = pd.DataFrame({"text": texts} | {name: scores[:, i].astype(np.float64) for i, name in enumerate(output_names)})
        return student.fit(frame, text_field="text", label_field=list(output_names))
    if kind == "hard":
        frame = pd.DataFrame({"text": texts, "label": list(labels)})
        return student.fit(frame, text_field="text", label_field="label")
    if teacher_problem == "multi_label" and isinstance(student, SklearnTextClassifier):
        return _fit_sklearn_soft_multi_label(student, texts, scores, labels, output_names)
    if teacher_problem == "multi_label":
        soft = [dict(zip(output_names, row.tolist())) for row in np.clip(scores.astype(np.float64), 0.0, 1.0)]
        frame = pd.DataFrame({"text": texts, "label": pd.Series(soft, dtype=object)})
        return student.fit(frame, text_field="text", label_field="label")
    rows, row_labels, weights = expand_soft(texts, scores, output_names, soft_min_prob)
    expanded_texts = [texts[i] for i in rows]
    if isinstance(student, TextClassifier):
        validation = None
        if student.validation_fraction:
            held = unit_hashes(texts, seed, "validation") < student.validation_fraction
            validation = pd.DataFrame({"text": [t for t, h in zip(texts, held) if h], "label": np.asarray(labels, object)[held]})
            inside = ~held[rows]
            expanded_texts = [t for t, ok in zip(expanded_texts, inside) if ok]
            row_labels, weights = row_labels[inside], weights[inside]
        frame = pd.DataFrame({"text": expanded_texts, "label": row_labels})
        return student.fit(frame, text_field="text", label_field="label", validation=validation,
                           sample_weight=weights.astype(np.float32))
    return _fit_sklearn_soft(student, texts, rows, row_labels, weights)


def _final_step(estimator: Any) -> Any:
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if steps else estimator


def _fit_sklearn_soft(student: SklearnTextClassifier, texts: list[str], rows: np.ndarray, row_labels: np.ndarray,
                      weights: np.ndarray) -> SklearnTextClassifier:
    """Fit the pipeline's transformers on each text once and its last step on the weighted rows."""
    from sklearn.base import clone

    estimator = clone(student.estimator)
    if getattr(estimator, "steps", None) and len(estimator.steps) > 1:
        features = estimator[:-1].fit_transform(texts)
        _final_step(estimator).fit(features[rows], row_labels, sample_weight=weights)
    else:
        estimator.fit([texts[i] for i in rows], row_labels, sample_weight=weights)
    params = student.get_params(deep=False) | {"estimator": estimator, "prefit": True}
    return SklearnTextClassifier(**params)


def _fit_sklearn_soft_multi_label(student: SklearnTextClassifier, texts: list[str], scores: np.ndarray, labels: Any,
                                  output_names: tuple[str, ...]) -> SklearnTextClassifier:
    """A one-vs-rest pipeline whose binary models learned the teacher's per-label probabilities.

    The pipeline is fitted once on the teacher's label sets (that sets up the vectorizer and
    the ``OneVsRestClassifier``'s bookkeeping); then each label's estimator is replaced by a
    clone fitted on the expanded rows (every text "on" with weight ``p_k`` and "off" with
    ``1 - p_k``, the binary cross-entropy against ``p_k``).
    """
    from sklearn.base import clone

    names = list(output_names)
    chosen = [set(row) if isinstance(row, (list, tuple, np.ndarray)) else set() for row in labels]
    hard = np.array([[name in row for name in names] for row in chosen], dtype=np.int64)
    estimator = clone(student.estimator)
    features = estimator[:-1].fit_transform(texts)
    one_vs_rest = _final_step(estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a label always off in the hard labels: refitted below
        one_vs_rest.fit(features, hard)
    from scipy import sparse

    doubled = sparse.vstack([features, features]).tocsr()
    side = np.r_[np.ones(len(texts), dtype=np.int64), np.zeros(len(texts), dtype=np.int64)]
    for k in range(len(names)):
        p = np.clip(scores[:, k].astype(np.float64), 0.0, 1.0)
        binary = clone(one_vs_rest.estimator)
        binary.fit(doubled, side, sample_weight=np.r_[p, 1.0 - p])
        one_vs_rest.estimators_[k] = binary
    params = student.get_params(deep=False) | {"estimator": estimator, "prefit": True, "labels": names}
    return SklearnTextClassifier(**params)


def save_student(student: Any, folder: Path) -> Path:
    """Write the fitted student to ``folder`` (created; must not hold anything yet).

    Transformer and KimCNN students: ``save_pretrained``. scikit-learn students: the
    pickle-free ``tfidf-linear`` layout (``SklearnTextClassifier.save_pretrained``) where the
    pipeline fits it; all of these load in :class:`~nemo_cls_dask.DistributedDataClassifier`
    and the CLI. Any other scikit-learn pipeline: :data:`SKLEARN_FILE`, a joblib pickle
    (trusted use only), for ``SklearnTextClassifier.load(..., allow_pickle=True)``.
    """
    from ..lightweight.tfidf_export import LayoutUnsupported

    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(student, SklearnTextClassifier):
        try:
            return student.save_pretrained(folder)
        except LayoutUnsupported:
            pass
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # said once, in the result's notes
            student.save(folder / SKLEARN_FILE)
    else:
        student.save_pretrained(folder)
    return folder


def saved_operator(folder: Path, text_field: str, problem: str) -> Any:
    """The saved student as an operator adding :data:`STUDENT_LABEL` (and :data:`STUDENT_SCORES`)."""
    score_field = None if problem == "regression" else STUDENT_SCORES
    pickle = folder / SKLEARN_FILE
    if pickle.is_file():
        model = SklearnTextClassifier.load(pickle, allow_pickle=True)  # written by this run
        return model.as_operator(text_field=text_field, label_field=STUDENT_LABEL, score_field=score_field)
    return DistributedDataClassifier(model_identifier=folder, text_field=text_field, label_field=STUDENT_LABEL,
                                     score_field=score_field)
