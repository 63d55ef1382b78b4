"""The function dask runs on each partition: text -> models -> new columns.

It lives in an importable module (not ``__main__``) so workers import it instead of
receiving it with every task; the models it uses come from the per-process registry.
Several classifiers can run in one call: the partition is read once, and texts are
tokenized once per distinct (text column, tokenizer, max_chars, max length, truncation or
windows with their overlap), where "tokenizer" means the tokenizer files' content
(:func:`~nemo_cls_dask.models.loading.tokenizer_fingerprint`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..engine import aggregate_windows, infer
from ..frames import assign_columns, empty_column, text_values
from ..models.loading import LoadedModel, get_model
from ..problems import ProblemType
from ..tokenization import EncodedTexts, WindowedTexts, clean_texts, default_max_chars, encode, encode_windows

if TYPE_CHECKING:
    from .base import DistributedDataClassifier


def classify_partition(part: Any, classifiers: Sequence[DistributedDataClassifier]) -> Any:
    """Add every classifier's output columns to ``part`` (pandas or cuDF), then filter.

    Rows keep their positions and index values; only ``filter_by`` removes rows, after all
    classifiers ran, as a boolean mask (order kept).
    """
    columns, problems = _output_columns(part, classifiers)
    out = assign_columns(part, columns)
    return filter_partition(out, classifiers, problems)


def output_partition(part: Any, classifiers: Sequence[DistributedDataClassifier]) -> Any:
    """Only the output columns of every classifier, for ``part``'s rows (same index).

    ``part`` needs only the classifiers' text columns: the dask graph feeds this function
    a projection of the frame, so the models read nothing else.
    """
    columns, _ = _output_columns(part, classifiers)
    return assign_columns(part.iloc[:, :0], columns)


def filter_partition(
    part: Any, classifiers: Sequence[DistributedDataClassifier], problems: Sequence[ProblemType | None]
) -> Any:
    """Apply each classifier's ``filter_by`` in turn (``problems``: how each reads its labels)."""
    for classifier, problem in zip(classifiers, problems):
        if classifier.filter_by is not None:
            part = classifier.apply_filter(part, problem)
    return part


def _output_columns(
    part: Any, classifiers: Sequence[DistributedDataClassifier]
) -> tuple[dict[str, Any], list[ProblemType | None]]:
    """Every classifier's columns for ``part`` (empty columns for an empty part), and the
    problem types of those with ``filter_by`` (None for the others)."""
    columns: dict[str, Any] = {}
    problems: list[ProblemType | None] = []
    if len(part) == 0:
        for classifier in classifiers:
            info = classifier.describe()
            problems.append(classifier.problem(info) if classifier.filter_by is not None else None)
            columns.update({name: empty_column(dtype, part) for name, dtype in classifier.all_output_dtypes(info).items()})
        return columns, problems
    texts_cache: dict[tuple, tuple[list[str], Any]] = {}
    encoded_cache: dict[tuple, EncodedTexts | WindowedTexts] = {}
    for classifier in classifiers:
        loaded = get_model(classifier.model_identifier, classifier.cache_dir, classifier.device)
        max_length = classifier.max_seq_length or loaded.info.max_len
        windowed = classifier.long_documents != "truncate"
        # Characters past max_chars (default: derived from max_length) never reach the tokenizer.
        max_chars = classifier.max_chars or default_max_chars(max_length, windowed)
        text_key = (classifier.text_field, max_chars)
        if text_key not in texts_cache:
            texts_cache[text_key] = clean_texts(text_values(part[classifier.text_field]), max_chars)
        texts, valid = texts_cache[text_key]
        # Same tokenizer files (not just the same folder) tokenize alike: share the ids.
        # Windowed ids differ from truncated ones, and with the overlap; mean and max share them.
        mode = ("windows", classifier.chunk_overlap) if windowed else ("truncate",)
        encode_key = (text_key, loaded.info.tokenizer_key or str(loaded.info.tokenizer_path), max_length, mode)
        if encode_key not in encoded_cache:
            # Text with no tokens (zero-width, combining, NUL) is invalid like "".
            limits = {"max_chars": max_chars, "drop_tokenless": True}
            if windowed:
                encoded_cache[encode_key] = encode_windows(loaded.tokenizer, texts, valid, max_length, classifier.chunk_overlap, **limits)
            else:
                encoded_cache[encode_key] = encode(loaded.tokenizer, texts, valid, max_length, **limits)
        tokens = encoded_cache[encode_key]
        columns.update(classifier_columns(classifier, loaded, tokens, tokens.valid, part))
        problems.append(classifier.problem(loaded.info) if classifier.filter_by is not None else None)
    return columns, problems


def classifier_columns(
    classifier: DistributedDataClassifier,
    loaded: LoadedModel,
    tokens: EncodedTexts | WindowedTexts,
    valid: Any,
    like: Any,
) -> dict[str, Any]:
    """Run one classifier's model over its tokens and build all its columns for ``like``.

    With windows (long documents), every window is a row of the engine's batches; the
    windows' probabilities, dropout samples and embeddings are then reduced to their rows.
    """
    info = loaded.info
    uncertainty = classifier.uncertainty or ()
    samples_wanted = classifier.dropout_samples if "mc_variance" in uncertainty else None
    windows = tokens if isinstance(tokens, WindowedTexts) else None
    result = infer(
        loaded,
        windows.windows if windows is not None else tokens,
        classifier.batch_settings(info),
        embeddings=classifier.embedding_field is not None,
        dropout_samples=samples_wanted,
    )
    samples = classifier.probabilities(result.samples, info) if result.samples is not None else None
    embeddings = result.embeddings
    if windows is None:
        columns = classifier.postprocess(result.outputs, valid, info, like)
        probabilities = classifier.probabilities(result.outputs, info) if uncertainty else None
    else:
        rows, how = windows.num_rows, classifier.long_documents
        probabilities = aggregate_windows(classifier.probabilities(result.outputs, info), windows.owner, rows, how)
        single = aggregate_windows(result.outputs, windows.owner, rows, "mean")  # exact for one window
        single[torch.from_numpy(windows.windows_per_row() != 1).to(single.device)] = float("nan")
        columns = classifier.postprocess_aggregated(probabilities, single, valid, info, like)
        if samples is not None:
            samples = aggregate_windows(samples, windows.owner, rows, how)
        if embeddings is not None:
            embeddings = aggregate_windows(embeddings, windows.owner, rows, "mean")
    columns.update(classifier.extra_columns(probabilities, samples, embeddings, valid, info, like))
    return columns
