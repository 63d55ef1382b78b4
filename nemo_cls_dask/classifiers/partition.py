"""The function dask runs on each partition: text -> models -> new columns.

It lives in an importable module (not ``__main__``) so workers import it instead of
receiving it with every task; the models it uses come from the per-process registry.
Several classifiers can run in one call: the partition is read once, and texts are
tokenized once per distinct (text column, tokenizer, max_chars, max length), where
"tokenizer" means the tokenizer files' content (:func:`~nemo_cls_dask.models.loading.tokenizer_fingerprint`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..engine import run_model
from ..frames import assign_columns, text_values
from ..models.loading import get_model
from ..tokenization import EncodedTexts, clean_texts, encode

if TYPE_CHECKING:
    from .base import DistributedDataClassifier


def classify_partition(part: Any, classifiers: Sequence[DistributedDataClassifier]) -> Any:
    """Add every classifier's output columns to ``part`` (pandas or cuDF), then filter.

    Rows keep their positions and index values; only ``filter_by`` removes rows, after all
    classifiers ran, as a boolean mask (order kept).
    """
    if len(part) == 0:
        return classifiers[0]._meta_for(part, classifiers)
    columns: dict[str, Any] = {}
    texts_cache: dict[tuple, tuple[list[str], Any]] = {}
    encoded_cache: dict[tuple, EncodedTexts] = {}
    infos = []
    for classifier in classifiers:
        loaded = get_model(classifier.model_identifier, classifier.cache_dir, classifier.device)
        max_chars = classifier.max_chars
        max_length = classifier.max_seq_length or loaded.info.max_len
        text_key = (classifier.text_field, max_chars)
        if text_key not in texts_cache:
            texts_cache[text_key] = clean_texts(text_values(part[classifier.text_field]), max_chars)
        texts, valid = texts_cache[text_key]
        # Same tokenizer files (not just the same folder) tokenize alike: share the ids.
        encode_key = (text_key, loaded.info.tokenizer_key or str(loaded.info.tokenizer_path), max_length)
        if encode_key not in encoded_cache:
            encoded_cache[encode_key] = encode(loaded.tokenizer, texts, valid, max_length)
        outputs = run_model(loaded, encoded_cache[encode_key], classifier._batch_settings())
        columns.update(classifier.postprocess(outputs, valid, loaded.info, part))
        infos.append(loaded.info)
    out = assign_columns(part, columns)
    for classifier, info in zip(classifiers, infos):
        out = classifier._apply_filter(out, info)
    return out
