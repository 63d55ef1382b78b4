"""Write a fitted scikit-learn TF-IDF + linear model as a ``tfidf-linear`` checkpoint (no pickle).

Supported (anything else raises :class:`LayoutUnsupported` naming what is, and pointing to
the joblib save, a pickle for trusted use only):

* the pipeline ``Pipeline([TfidfVectorizer(...), linear])``, with the vectorizer's
  ``analyzer`` ``"word"``, ``"char"`` or ``"char_wb"``, no custom ``preprocessor``/``tokenizer``
  callables, ``input="content"``;
* single-label: ``LogisticRegression`` (multinomial or one-vs-rest), ``LogisticRegressionCV``,
  ``SGDClassifier(loss="log_loss")``: any classifier with ``coef_``/``intercept_`` whose
  ``predict_proba`` is the softmax of its decision values, or (one-vs-rest) its normalised
  sigmoids; two classes included. Margin models without probabilities (``LinearSVC``,
  ``RidgeClassifier``, ``SGDClassifier(loss="hinge")``) have no ``predict_proba`` and are
  refused;
* multi-label: ``OneVsRestClassifier`` of such binary classifiers (one per label, each
  ``predict_proba`` the sigmoid of its decision value);
* regression: ``Ridge``, ``RidgeCV``, ``LinearRegression``, ``SGDRegressor``, ``Lasso``,
  ``ElasticNet``: any regressor whose ``predict`` is ``X @ coef_.T + intercept_`` (one or
  several outputs).

Which formula a classifier uses is not guessed from its class: it is checked on random
TF-IDF-like rows (``predict_proba`` against each candidate) before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..problems import get_problem
from .tfidf_checkpoint import ANALYZER_KEY, LAYOUT, LAYOUT_KEY, SETTINGS_KEY, VOCAB_FILE, VOCAB_FORMAT, VOCAB_VERSION
from .tfidf_linear import TfidfLinear
from .tfidf_terms import TermAnalyzer

#: Default ``max_len``: term ids kept per text (the start id included). TF-IDF reads the
#: whole document; texts with more terms than this are cut, so set it above your longest.
DEFAULT_MAX_LEN = 8192
_PROBE_ROWS = 16


class LayoutUnsupported(InputError):
    """The model cannot be written in the ``tfidf-linear`` layout (the message says why)."""


def _unsupported(why: str) -> LayoutUnsupported:
    return LayoutUnsupported(
        f"{why}. The pickle-free 'tfidf-linear' layout holds Pipeline([TfidfVectorizer, linear model]) with "
        f"LogisticRegression / LogisticRegressionCV / SGDClassifier(loss='log_loss') (single-label), "
        f"OneVsRestClassifier of those (multi-label) or Ridge / LinearRegression / SGDRegressor (regression). "
        f"For other estimators use SklearnTextClassifier.save(path): a joblib pickle, to be loaded only from "
        f"a source you trust."
    )


def save_tfidf_linear(model: Any, folder: str | Path, *, problem: str | None = None, labels: list[str] | None = None,
                      output_names: list[str] | None = None, threshold: float = 0.5,
                      max_len: int = DEFAULT_MAX_LEN) -> Path:
    """Write ``model`` (a fitted ``SklearnTextClassifier`` or scikit-learn pipeline) to ``folder``.

    For a bare pipeline, ``problem`` defaults to ``"regression"`` for a regressor, else
    ``"multi_label"`` for a ``OneVsRestClassifier`` fitted on a label matrix, else
    ``"single_label"``; ``labels`` names the outputs of a multi-label pipeline (default:
    ``"0".."k-1"``), ``output_names`` those of a regression one (default ``"value"`` or
    ``"value_0"``...). The folder is created; existing checkpoint files in it are never replaced.
    """
    from .sklearn_adapter import SklearnTextClassifier

    if isinstance(model, SklearnTextClassifier):
        estimator, fitted_labels = model.fitted()
        problem, labels, threshold = model.problem, list(fitted_labels), float(model.threshold)
    else:
        estimator = model
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 2:
        raise InputError(f"max_len must be an integer >= 2 (the start id and one term), got {max_len!r}.")
    vectorizer, final = _pipeline_steps(estimator)
    analyzer, terms, idf = _vectorizer_parts(vectorizer)
    problem = get_problem(problem or _guess_problem(final)).name
    coef, intercept, link, names = _linear_parts(final, problem, len(terms), labels, output_names)
    module = TfidfLinear(len(terms), coef.shape[0], sublinear_tf=bool(vectorizer.sublinear_tf), norm=vectorizer.norm,
                         use_idf=bool(vectorizer.use_idf), binary=bool(vectorizer.binary), link=link)
    with torch.no_grad():
        module.coef.copy_(torch.from_numpy(coef))
        module.intercept.copy_(torch.from_numpy(intercept))
        if idf is not None:
            module.idf.copy_(torch.from_numpy(idf))
    config: dict[str, Any] = {
        LAYOUT_KEY: LAYOUT, SETTINGS_KEY: module.config(), ANALYZER_KEY: analyzer.settings(), "vocab_file": VOCAB_FILE,
        "problem_type": get_problem(problem).config_name, "max_len": max_len,
        "estimator": f"{type(vectorizer).__name__} + {type(final).__name__}",
    }
    if problem == "regression":
        config["output_names"] = names
    else:
        config["id2label"] = {str(i): name for i, name in enumerate(names)}
        config["label2id"] = {name: i for i, name in enumerate(names)}
    if problem == "multi_label":
        config["thresholds"] = float(threshold)
    return _write(Path(folder), module, terms, config)


def _write(folder: Path, module: TfidfLinear, terms: list[str], config: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    if folder.is_symlink():
        raise InputError(f"{folder} is a symbolic link; save to a real folder.")
    taken = [name for name in ("config.json", "model.safetensors", VOCAB_FILE) if (folder / name).exists()]
    if taken:
        raise InputError(f"{folder} already holds {taken}; save to a new or empty folder (nothing is overwritten).")
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to(torch.float32).contiguous().clone() for name, t in module.state_dict().items()}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    vocab = {"format": VOCAB_FORMAT, "version": VOCAB_VERSION, "terms": terms}
    (folder / VOCAB_FILE).write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    return folder


def _pipeline_steps(estimator: Any) -> tuple[Any, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline

    if not isinstance(estimator, Pipeline) or len(estimator.steps) != 2:
        raise _unsupported(f"Got a {type(estimator).__name__}, not a two-step Pipeline")
    vectorizer, final = estimator.steps[0][1], estimator.steps[1][1]
    if type(vectorizer) is not TfidfVectorizer:
        raise _unsupported(f"The pipeline's first step is a {type(vectorizer).__name__}, not a TfidfVectorizer")
    return vectorizer, final


def _vectorizer_parts(vectorizer: Any) -> tuple[TermAnalyzer, list[str], np.ndarray | None]:
    if getattr(vectorizer, "vocabulary_", None) is None:
        raise InputError("The TfidfVectorizer is not fitted; fit the pipeline first.")
    if vectorizer.input != "content" or vectorizer.preprocessor is not None or vectorizer.tokenizer is not None:
        raise _unsupported("The TfidfVectorizer has input != 'content' or a custom preprocessor/tokenizer (Python "
                           "callables cannot be saved as data)")
    if not isinstance(vectorizer.analyzer, str):
        raise _unsupported("The TfidfVectorizer has a callable analyzer")
    word = vectorizer.analyzer == "word"
    stop = vectorizer.get_stop_words() if word else None
    try:
        analyzer = TermAnalyzer(vectorizer.analyzer, tuple(vectorizer.ngram_range), bool(vectorizer.lowercase),
                                vectorizer.strip_accents, vectorizer.token_pattern if word else None,
                                None if stop is None else list(stop))
    except InputError as error:
        raise _unsupported(f"The TfidfVectorizer's settings cannot be saved: {error}") from None
    terms = [""] * len(vectorizer.vocabulary_)
    for term, index in vectorizer.vocabulary_.items():
        terms[int(index)] = str(term)
    idf = np.asarray(vectorizer.idf_, dtype=np.float32) if vectorizer.use_idf else None
    return analyzer, terms, idf


def _guess_problem(final: Any) -> str:
    from sklearn.base import is_regressor
    from sklearn.multiclass import OneVsRestClassifier

    if is_regressor(final):
        return "regression"
    if isinstance(final, OneVsRestClassifier) and getattr(final, "multilabel_", False):
        return "multi_label"
    return "single_label"


def _probe(num_features: int) -> Any:
    """Random non-negative, row-normalised sparse rows: what a TF-IDF vectorizer feeds the model."""
    from scipy import sparse
    from sklearn.preprocessing import normalize

    density = min(1.0, 20 / num_features)
    rows = sparse.random(_PROBE_ROWS, num_features, density=density, format="csr", random_state=0, dtype=np.float64)
    return normalize(rows)


def _coef(estimator: Any, num_features: int) -> tuple[np.ndarray, np.ndarray]:
    coef, intercept = getattr(estimator, "coef_", None), getattr(estimator, "intercept_", None)
    if coef is None or intercept is None:
        raise _unsupported(f"The {type(estimator).__name__} is not a linear model with coef_ and intercept_")
    coef = np.atleast_2d(np.asarray(coef.toarray() if hasattr(coef, "toarray") else coef, dtype=np.float64))
    intercept = np.broadcast_to(np.atleast_1d(np.asarray(intercept, dtype=np.float64)), (coef.shape[0],)).copy()
    if coef.shape[1] != num_features:
        raise InputError(f"The linear model has {coef.shape[1]} features, the vectorizer {num_features}.")
    return coef, intercept


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return np.asarray(a).shape == np.asarray(b).shape and np.allclose(a, b, rtol=1e-6, atol=1e-9)


def _sigmoid(d: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * d))


def _linear_parts(final: Any, problem: str, num_features: int, labels: list[str] | None,
                  output_names: list[str] | None) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
    """``(coef, intercept, link, output names)`` as float32, checked on probe rows."""
    probe = _probe(num_features)
    if problem == "regression":
        coef, intercept = _coef(final, num_features)
        if not hasattr(final, "predict") or not _close(np.asarray(final.predict(probe)).reshape(_PROBE_ROWS, -1),
                                                       probe @ coef.T + intercept):
            raise _unsupported(f"The {type(final).__name__}'s predict is not X @ coef_.T + intercept_")
        names = output_names or (["value"] if coef.shape[0] == 1 else [f"value_{i}" for i in range(coef.shape[0])])
    elif problem == "multi_label":
        coef, intercept = _one_vs_rest(final, probe, num_features)
        names = labels or [str(c) for c in range(coef.shape[0])]
        link = "identity"
    else:
        coef, intercept, link = _single_label(final, probe, num_features)
        names = labels or [str(c) for c in final.classes_]
    if len(names) != coef.shape[0]:
        raise InputError(f"{len(names)} output names for a model with {coef.shape[0]} outputs.")
    link = "identity" if problem == "regression" else link
    return coef.astype(np.float32), intercept.astype(np.float32), link, [str(n) for n in names]


def _single_label(final: Any, probe: Any, num_features: int) -> tuple[np.ndarray, np.ndarray, str]:
    if not hasattr(final, "predict_proba") or not hasattr(final, "decision_function"):
        raise _unsupported(f"The {type(final).__name__} has no predict_proba and decision_function")
    coef, intercept = _coef(final, num_features)
    proba = final.predict_proba(probe)
    decision = np.asarray(probe @ coef.T + intercept)
    if coef.shape[0] == 1:  # two classes: predict_proba is [1 - sigmoid(d), sigmoid(d)] = softmax([0, d])
        if not _close(proba[:, 1], _sigmoid(decision[:, 0])):
            raise _unsupported(f"The two-class {type(final).__name__}'s predict_proba is not sigmoid(decision)")
        return np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept]), "identity"
    softmax = np.exp(decision - decision.max(axis=1, keepdims=True))
    if _close(proba, softmax / softmax.sum(axis=1, keepdims=True)):
        return coef, intercept, "identity"
    sigmoid = _sigmoid(decision)
    if _close(proba, sigmoid / sigmoid.sum(axis=1, keepdims=True)):
        return coef, intercept, "ovr_normalized"
    raise _unsupported(f"The {type(final).__name__}'s predict_proba is neither the softmax nor the normalised sigmoid "
                       f"of its decision values")


def _one_vs_rest(final: Any, probe: Any, num_features: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.multiclass import OneVsRestClassifier

    if not isinstance(final, OneVsRestClassifier) or not getattr(final, "multilabel_", False):
        raise _unsupported(f"A multi-label model must be a OneVsRestClassifier fitted on a label matrix, got "
                           f"a {type(final).__name__}")
    coefs, intercepts = [], []
    for k, binary in enumerate(final.estimators_):
        if not hasattr(binary, "coef_"):
            raise _unsupported(f"Label {k} of the OneVsRestClassifier has no linear model ({type(binary).__name__}; "
                               f"a label that is always or never on in the training data gets a constant predictor)")
        coef, intercept = _coef(binary, num_features)
        if coef.shape[0] != 1 or not _close(binary.predict_proba(probe)[:, 1], _sigmoid(probe @ coef[0] + intercept[0])):
            raise _unsupported(f"Label {k}'s {type(binary).__name__} is not a binary model whose predict_proba is "
                               f"sigmoid(decision)")
        coefs.append(coef[0])
        intercepts.append(intercept[0])
    return np.vstack(coefs), np.asarray(intercepts)
