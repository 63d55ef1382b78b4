"""The ``tfidf-linear`` checkpoint layout: a TF-IDF + linear model the operator loads without pickle.

A folder holds::

    config.json        {"architecture": "tfidf-linear",
                        "tfidf_linear": {num_features, num_outputs, sublinear_tf, norm, use_idf,
                                         binary, link},
                        "analyzer": {analyzer, ngram_range, lowercase, strip_accents,
                                     token_pattern, stop_words},
                        "vocab_file": "tfidf_vocab.json", "problem_type", "id2label"/"label2id"
                        (or "output_names" for regression), "max_len", "thresholds"
                        (multi-label), "estimator" (the scikit-learn class it came from)}
    model.safetensors  coef (outputs, terms), intercept (outputs,), idf (terms,) if use_idf
    tfidf_vocab.json   {"format": "nemo_cls_dask.tfidf_vocab", "version": 1, "terms": [...]}
                       (term j has feature index j)

Everything is JSON or safetensors: loading runs no code from the folder. An untrusted folder
is checked before anything large is read or allocated: the declared number of terms is
capped (:data:`MAX_FEATURES`), the vocabulary file's size is bounded by it, and the
weights' shapes (from the safetensors header) must match the config.

:class:`TfidfLinearLayout` registers on import (and through the ``nemo_cls_dask.layouts``
entry point), so ``DistributedDataClassifier(model_identifier=folder)`` and
``nemo-cls-dask classify --model folder`` run it like any other checkpoint: the
:class:`~.tfidf_terms.TermTokenizer` turns text into term ids and
:class:`~.tfidf_linear.TfidfLinear` turns ids into the linear model's outputs. Writing a
folder from a fitted scikit-learn pipeline is :mod:`.tfidf_export`.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ModelLoadError
from ..models.files import check_weights_present, config_labels, load_safetensors, tensor_shapes, weights_file
from ..models.layouts import MarkerLayout, ModelInfo, register_layout
from ..models.weights import check_shapes_on_meta, load_checked
from .tfidf_linear import TfidfLinear
from .tfidf_terms import FIRST_TERM_ID, TermAnalyzer, TermTokenizer

LAYOUT_KEY, LAYOUT = MarkerLayout.marker_key, "tfidf-linear"
SETTINGS_KEY, ANALYZER_KEY = "tfidf_linear", "analyzer"
VOCAB_FILE = "tfidf_vocab.json"
VOCAB_FORMAT, VOCAB_VERSION = "nemo_cls_dask.tfidf_vocab", 1
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
#: The most terms a checkpoint may declare (a 10-million-term vocabulary is a 40 MB idf vector per
#: output row and far beyond what a TF-IDF student needs).
MAX_FEATURES = 10_000_000
#: A term's JSON string (quotes, escapes, comma) may take at most this many bytes on average;
#: a vocabulary file larger than ``num_features`` times this is refused before it is read.
MAX_BYTES_PER_TERM = 256


def describe_tfidf(path: Path, config: dict[str, Any]) -> ModelInfo:
    """Check ``config.json``, the vocabulary file's size and the weights header; read nothing large."""
    source = str(path / "config.json")
    module = TfidfLinear.from_config(config.get(SETTINGS_KEY), source, MAX_FEATURES)
    TermAnalyzer.from_settings(config.get(ANALYZER_KEY), source)
    problem = config.get("problem_type")
    if problem not in PROBLEM_TYPES:
        raise ModelLoadError(f"{source}: problem_type must be one of {PROBLEM_TYPES}, got {problem!r}.")
    num_outputs = module.config()["num_outputs"]
    labels = config_labels(config) if problem != "regression" else None
    if problem != "regression" and (labels is None or len(labels) != num_outputs):
        raise ModelLoadError(f"{source}: a {problem} checkpoint needs id2label with one label per output "
                             f"({num_outputs}), got {0 if labels is None else len(labels)}.")
    max_len = config.get("max_len")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ModelLoadError(f"{source}: max_len must be a positive integer, got {max_len!r}.")
    vocab = _vocab_path(path, config)
    limit = module.num_features * MAX_BYTES_PER_TERM + 1024
    if vocab.stat().st_size > limit:
        raise ModelLoadError(f"{vocab}: {vocab.stat().st_size} bytes is too large for the {module.num_features} terms "
                             f"config.json declares (at most {limit}).")
    weights = check_weights_present(path)
    check_shapes_on_meta(lambda: TfidfLinear.from_config(config[SETTINGS_KEY], source), tensor_shapes(weights), weights,
                         "the tfidf_linear settings in config.json")
    return ModelInfo(path=path, layout=LAYOUT, problem_type=problem, labels=labels, num_outputs=num_outputs,
                     max_len=max_len, tokenizer_path=vocab, config=config, tokenizer_key=_tokenizer_key(vocab, config))


def _vocab_path(path: Path, config: dict[str, Any]) -> Path:
    name = config.get("vocab_file", VOCAB_FILE)
    if not isinstance(name, str) or Path(name).name != name:
        raise ModelLoadError(f"{path / 'config.json'}: vocab_file must be a file name inside the folder, got {name!r}.")
    vocab = path / name
    if vocab.is_symlink() or not vocab.is_file():
        raise ModelLoadError(f"{path}: no vocabulary file {name} (the TF-IDF terms) in the checkpoint.")
    return vocab


def _tokenizer_key(vocab: Path, config: dict[str, Any]) -> str:
    stat = vocab.stat()
    return f"{LAYOUT}:{_file_digest(str(vocab), stat.st_size, stat.st_mtime_ns)}:" + json.dumps(config[ANALYZER_KEY], sort_keys=True)


@lru_cache(maxsize=64)
def _file_digest(path: str, _size: int, _mtime: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_terms(vocab: Path, num_features: int) -> list[str]:
    """The vocabulary's terms in feature order, checked against the declared size."""
    try:
        data = json.loads(vocab.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"Cannot read the TF-IDF vocabulary {vocab}: {error}") from error
    if not isinstance(data, dict) or data.get("format") != VOCAB_FORMAT or data.get("version") != VOCAB_VERSION:
        raise ModelLoadError(f"{vocab} is not a version {VOCAB_VERSION} {VOCAB_FORMAT!r} file.")
    terms = data.get("terms")
    if not isinstance(terms, list) or not all(isinstance(term, str) for term in terms) or len(set(terms)) != len(terms):
        raise ModelLoadError(f"{vocab}: 'terms' must be a list of distinct strings.")
    if len(terms) != num_features:
        raise ModelLoadError(f"{vocab} has {len(terms)} terms but config.json declares {num_features}.")
    return terms


def load_tfidf_module(info: ModelInfo) -> TfidfLinear:
    """Build the module from ``config.json`` and fill it from ``model.safetensors`` (shapes checked first)."""
    source = str(info.path / "config.json")
    weights = weights_file(info.path)
    expected = "the tfidf_linear settings in config.json"
    check_shapes_on_meta(lambda: TfidfLinear.from_config(info.config[SETTINGS_KEY], source), tensor_shapes(weights),
                         weights, expected)
    module = TfidfLinear.from_config(info.config[SETTINGS_KEY], source, MAX_FEATURES)
    load_checked(module, load_safetensors(weights), weights, expected)
    return module.eval()


def load_term_tokenizer(info: ModelInfo) -> TermTokenizer:
    """The checkpoint's :class:`TermTokenizer` (analyzer settings from config.json, terms from the vocabulary)."""
    source = str(info.path / "config.json")
    analyzer = TermAnalyzer.from_settings(info.config[ANALYZER_KEY], source)
    return TermTokenizer(analyzer, read_terms(info.tokenizer_path, int(info.config[SETTINGS_KEY]["num_features"])))


@register_layout
class TfidfLinearLayout(MarkerLayout):
    """A TF-IDF vectorizer and linear model: ``{"architecture": "tfidf-linear"}`` in config.json."""

    name = LAYOUT

    def describe(self, path: Path, config: dict[str, Any], cache_dir: str | None) -> ModelInfo:
        return describe_tfidf(path, config)

    def load(self, info: ModelInfo, cache_dir: str | None) -> nn.Module:
        return load_tfidf_module(info)

    def load_tokenizer(self, info: ModelInfo) -> Any:
        return load_term_tokenizer(info)

    def embedding_rows(self, module: nn.Module) -> int | None:
        return FIRST_TERM_ID + module.num_features
