"""TextClassifier <-> plain transformers sequence classifiers, checked with transformers' own API.

Tolerance: probabilities are compared with ``rtol=1e-5`` (plus ``atol=1e-6`` for values near
0). Both sides run the same fp32 weights, but our engine batches rows by length and
transformers pads the whole list, so matmul shapes differ; fp32 round-off between shapes and
CPU kernels (AVX2/AVX512/AMX) is ~1e-7, and 100x headroom keeps that robust.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from nemo_cls_dask import DistributedDataClassifier
from nemo_cls_dask.errors import InputError
from nemo_cls_dask.testing import make_backbone_checkpoint, make_hf_sequence_checkpoint
from nemo_cls_dask.train.estimator import TextClassifier

RTOL, ATOL = 1e-5, 1e-6
WORDS = ["red", "green", "blue", "the", "a", "of", "is", "on", "small", "big"]


def fruit_frame(n: int = 48, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = ("apple", "banana")[i % 2]
        tags = [label] + (["water"] if rng.random() < 0.5 else [])
        words = list(rng.choice(WORDS, 5)) + [label, label] + (["water"] if "water" in tags else [])
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label, "tags": tags, "y": 1.0 + 2.0 * (label == "apple")})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return fruit_frame()


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_interop")
    return {arch: str(make_backbone_checkpoint(root / arch, arch=arch, seed=7)) for arch in ("deberta", "bert")}


def quick(backbone: str, **kwargs) -> TextClassifier:
    params = dict(epochs=2, learning_rate=1e-3, max_len=24, batch_tokens=384, max_batch_rows=16, verbose=False,
                  seed=0, autocast=False, validation_fraction=0.0)
    return TextClassifier(backbone, **(params | kwargs))


def transformers_scores(folder, texts: list[str], problem: str) -> np.ndarray:
    """Probabilities (or values) computed by AutoModelForSequenceClassification alone."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**batch).logits.float()
    if problem == "single_label":
        return torch.softmax(logits, dim=-1).numpy()
    if problem == "multi_label":
        return torch.sigmoid(logits).numpy()
    return logits.numpy()


FITS = {
    "single_label": ({}, "label"),
    "multi_label": ({"problem": "multi_label"}, "tags"),
    "regression": ({"problem": "regression"}, "y"),
}


def our_scores(clf: TextClassifier, texts: list[str]) -> np.ndarray:
    return clf.predict(texts) if clf.problem == "regression" else clf.predict_proba(texts)


@pytest.mark.parametrize("problem", list(FITS))
def test_trained_deberta_saves_in_transformers_layout(backbones, data, problem, tmp_path):
    params, label_field = FITS[problem]
    clf = quick(backbones["deberta"], pooling="cls", **params).fit(data, label_field=label_field)
    folder = clf.save_pretrained(tmp_path / "hf", layout="transformers")
    texts = data["text"].head(20).tolist()
    expected = np.asarray(our_scores(clf, texts), dtype=np.float64).reshape(len(texts), -1)
    np.testing.assert_allclose(transformers_scores(folder, texts, problem), expected, rtol=RTOL, atol=ATOL)
    # our operator reads the folder as a plain transformers checkpoint ("hf" layout)
    field = None if problem == "regression" else "p"
    scored = DistributedDataClassifier(model_identifier=str(folder), score_field=field, device="cpu")(pd.DataFrame({"text": texts}))
    column = scored["preds"] if problem == "regression" else scored["p"]
    got = np.asarray([np.ravel(v) for v in column], dtype=np.float64).reshape(len(texts), -1)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    # and TextClassifier loads it back with the same outputs, labels and thresholds
    loaded = TextClassifier.from_pretrained(folder)
    assert loaded.labels_ == clf.labels_
    if problem == "multi_label":
        np.testing.assert_allclose(loaded.thresholds_, clf.thresholds_)
    np.testing.assert_allclose(np.asarray(our_scores(loaded, texts)).reshape(len(texts), -1), expected, rtol=RTOL, atol=ATOL)


def test_pipeline_opens_saved_model_with_same_labels_and_scores(backbones, data, tmp_path):
    from transformers import pipeline

    clf = quick(backbones["deberta"], pooling="cls", calibration=None).fit(data)
    clf._set_calibration(clf._fit_temperature(np.asarray(clf._outputs(data, "text")), np.asarray(
        [clf.labels_.index(v) for v in data["label"]]), "test rows"))  # a temperature != 1 is folded into the weights
    assert clf.model_.temperature != 1.0
    folder = clf.save_pretrained(tmp_path / "hf", layout="transformers")
    texts = data["text"].head(12).tolist()
    results = pipeline("text-classification", model=str(folder), tokenizer=str(folder), top_k=None)(texts)
    proba = clf.predict_proba(texts)
    for row, result in zip(proba, results):
        by_label = {item["label"]: item["score"] for item in result}
        np.testing.assert_allclose([by_label[label] for label in clf.labels_], row, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(("arch", "pooling", "reason"), [("bert", "cls", "tanh"), ("deberta", "mean", "pooling='mean'")])
def test_refuses_heads_transformers_cannot_express(backbones, data, arch, pooling, reason, tmp_path):
    clf = quick(backbones[arch], pooling=pooling, epochs=1).fit(data)
    with pytest.raises(InputError, match=reason):
        clf.save_pretrained(tmp_path / "hf", layout="transformers")
    assert not (tmp_path / "hf").exists()  # refused before writing anything


CHECKPOINTS = {
    "single_label": (dict(labels=["apple", "banana"]), "label"),
    "multi_label": (dict(labels=["apple", "banana", "water"], problem_type="multi_label_classification"), "tags"),
    "regression": (dict(labels=None, num_labels=1, problem_type="regression"), "y"),
}


@pytest.mark.parametrize("problem", list(CHECKPOINTS))
def test_transformers_checkpoint_loads_predicts_and_fits_further(data, problem, tmp_path):
    options, label_field = CHECKPOINTS[problem]
    source = make_hf_sequence_checkpoint(tmp_path / "source", arch="bert", max_len=24, seed=3, **options)
    texts = data["text"].head(16).tolist()
    clf = TextClassifier.from_pretrained(source, verbose=False, autocast=False, max_len=24)
    assert clf.problem == problem
    before = np.asarray(our_scores(clf, texts)).reshape(len(texts), -1)
    np.testing.assert_allclose(before, transformers_scores(source, texts, problem), rtol=RTOL, atol=ATOL)

    clf.set_params(epochs=2, learning_rate=1e-3, validation_fraction=0.0, batch_tokens=384, max_batch_rows=16)
    clf.fit(data, label_field=label_field)
    after = np.asarray(our_scores(clf, texts)).reshape(len(texts), -1)
    assert np.abs(after - before).max() > 1e-3  # the further fit changed the model
    folder = clf.save_pretrained(tmp_path / "tuned")  # default: the layout it came in
    np.testing.assert_allclose(transformers_scores(folder, texts, problem), after, rtol=RTOL, atol=ATOL)


def test_transformers_checkpoint_refuses_frozen_backbone(tmp_path):
    source = make_hf_sequence_checkpoint(tmp_path / "source", ["a", "b"], arch="bert", seed=3)
    with pytest.raises(InputError, match="frozen_backbone"):
        TextClassifier.from_pretrained(source, frozen_backbone=True)
