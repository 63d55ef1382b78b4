"""Temperature scaling and expected calibration error: metric, fit, model, operator, estimator."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from nemo_cls_dask import DistributedDataClassifier, InputError, ModelLoadError, TextClassifier
from nemo_cls_dask.models.loading import describe_model
from nemo_cls_dask.testing import make_backbone_checkpoint
from nemo_cls_dask.train.calibration import calibrate_temperature, fit_temperature, negative_log_likelihood, rescale_thresholds
from nemo_cls_dask.train.metrics import expected_calibration_error

FILLER = "the of and to a in is it you that he was for on are with as".split()


def calibrated_logits(n: int = 3000, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from the logits' own softmax: calibrated by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=1.5, size=(n, k))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])
    return z, y


# ---------------------------------------------------------------------------- metric


def test_ece_by_hand():
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    target = np.array([0, 1, 0, 1])
    # bins: 0.9 (2 rows, accuracy 0.5) and 0.6 and 0.7 (1 row each, correct)
    expected = (2 * abs(0.5 - 0.9) + abs(1 - 0.6) + abs(1 - 0.7)) / 4
    assert expected_calibration_error(proba, target) == pytest.approx(expected)
    assert expected_calibration_error(proba, target, n_bins=1) == pytest.approx(abs(0.75 - 0.775))
    # multi-label: every probability against its own 0/1 outcome
    multi = expected_calibration_error(np.array([[0.8, 0.2]]), np.array([[1, 0]]), multi_label=True)
    assert multi == pytest.approx((abs(1 - 0.8) + abs(0 - 0.2)) / 2)
    # NaN rows (blank text) are left out; nothing left gives NaN
    assert expected_calibration_error(np.vstack([proba, [np.nan, np.nan]]), np.r_[target, 0]) == pytest.approx(expected)
    assert np.isnan(expected_calibration_error(np.zeros((0, 2)), np.zeros(0)))
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(proba, target, n_bins=0)


# ---------------------------------------------------------------------------- fitting T


@pytest.mark.parametrize("scale, expect_above_one", [(4.0, True), (0.3, False)])
def test_temperature_undoes_over_and_under_confidence(scale, expect_above_one):
    z, y = calibrated_logits()
    fit = calibrate_temperature(z * scale, y, "single_label")
    assert (fit.temperature > 1) == expect_above_one
    assert fit.temperature == pytest.approx(scale, rel=0.1)  # recovers the distortion
    assert fit.nll_after < fit.nll_before - 0.05
    assert fit.ece_after < fit.ece_before / 2 and fit.ece_after < 0.03
    # argmax never moves
    assert np.array_equal((z * scale / fit.temperature).argmax(1), (z * scale).argmax(1))


def test_temperature_multi_label_and_thresholds():
    rng = np.random.default_rng(1)
    z = rng.normal(scale=2.0, size=(3000, 3))
    y = (rng.random(z.shape) < 1 / (1 + np.exp(-z))).astype(float)
    fit = calibrate_temperature(z * 5.0, y, "multi_label")
    assert fit.temperature == pytest.approx(5.0, rel=0.1) and fit.ece_after < fit.ece_before / 2
    thresholds = np.array([0.2, 0.5, 0.93])
    moved = rescale_thresholds(thresholds, 1.0, fit.temperature)
    before = 1 / (1 + np.exp(-z * 5.0)) >= thresholds
    after = 1 / (1 + np.exp(-z * 5.0 / fit.temperature)) >= moved
    assert np.array_equal(before, after)
    np.testing.assert_allclose(rescale_thresholds(moved, fit.temperature, 1.0), thresholds)


def test_temperature_edge_cases():
    z, y = calibrated_logits(200)
    # already calibrated: close to 1, never worse than T = 1
    t = fit_temperature(z, y, "single_label")
    assert negative_log_likelihood(z, y, "single_label", t) <= negative_log_likelihood(z, y, "single_label")
    # non-finite rows (blank text) are ignored; none left is an error
    assert fit_temperature(np.vstack([z, [np.nan] * 4]), np.r_[y, 0], "single_label") == pytest.approx(t)
    with pytest.raises(ValueError, match="at least one row"):
        fit_temperature(np.full((3, 2), np.nan), np.zeros(3), "single_label")
    with pytest.raises(ValueError, match="temperature scaling is for"):
        fit_temperature(z, y, "regression")


# ---------------------------------------------------------------------------- saved temperature


def _with_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("checkpoint", ["head_checkpoint", "multilabel_checkpoint"])
def test_saved_temperature_divides_operator_logits(request, copy_checkpoint, varied_texts, checkpoint):
    source = request.getfixturevalue(checkpoint)
    hot = _with_config(copy_checkpoint(source, "hot"), temperature=2.5)
    frame = pd.DataFrame({"text": varied_texts[:12]})

    def scores(folder):
        out = DistributedDataClassifier(model_identifier=str(folder), score_field="p", max_seq_length=64, autocast=False)(frame)
        return np.stack(out["p"].to_list()).astype(np.float64), out["preds"].to_list()

    plain, plain_labels = scores(source)
    scaled, scaled_labels = scores(hot)
    if checkpoint == "head_checkpoint":
        assert (plain > 0).all()
        expected = torch.softmax(torch.log(torch.from_numpy(plain)) / 2.5, dim=1).numpy()  # log p = z + const
        assert scaled_labels == plain_labels
        usable = np.ones_like(plain, dtype=bool)
    else:
        expected = torch.sigmoid(torch.logit(torch.from_numpy(plain)) / 2.5).numpy()
        usable = (plain > 1e-3) & (plain < 1 - 1e-3)  # float32 sigmoids near 0 or 1 lose their logits
        assert usable.mean() > 0.8
    np.testing.assert_allclose(scaled[usable], expected[usable], atol=1e-5)
    assert not np.allclose(scaled, plain, atol=1e-3)


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), "2", True])
def test_bad_saved_temperature(copy_checkpoint, head_checkpoint, value):
    folder = _with_config(copy_checkpoint(head_checkpoint, "bad"), temperature=value)
    with pytest.raises(ModelLoadError, match="'temperature' must be a finite number > 0"):
        DistributedDataClassifier(model_identifier=str(folder))(pd.DataFrame({"text": ["x"]}))


def test_regression_head_cannot_have_temperature(copy_checkpoint, head_checkpoint):
    config = json.loads((head_checkpoint / "config.json").read_text())
    folder = _with_config(copy_checkpoint(head_checkpoint, "reg"), temperature=2.0, problem_type="regression",
                          id2label={}, label2id={}, num_outputs=len(config["id2label"]))
    with pytest.raises(ModelLoadError, match="regression head cannot have one"):
        describe_model(str(folder))


# ---------------------------------------------------------------------------- TextClassifier


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return str(make_backbone_checkpoint(tmp_path_factory.mktemp("calibration") / "backbone"))


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(160):
        label = ("apple", "banana", "cherry")[i % 3]
        noisy = rng.random() < 0.25  # a quarter of the texts name another fruit: not separable
        word = ("apple", "banana", "cherry")[rng.integers(3)] if noisy else label
        water = rng.random() < 0.5
        words = list(rng.choice(FILLER, 5)) + [word] + (["water"] if water else [])
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label, "tags": sorted({label} | ({"water"} if water else set()))})
    return pd.DataFrame(rows)


def quick(backbone: str, **kwargs) -> TextClassifier:
    # a high learning rate and many epochs make the head over-confident on noisy labels
    # (all 30 epochs: early stopping, on by default since the training defaults, would stop before that)
    params = dict(frozen_backbone=True, epochs=30, early_stopping_patience=None, learning_rate=0.05, warmup_ratio=0.0, max_len=24,
                  max_batch_rows=16, verbose=False, seed=0, fc_dropout=0.0, validation_fraction=0.3,
                  autocast=False)  # exact fp32 comparisons below
    params.update(kwargs)
    return TextClassifier(backbone, **params)


def test_fit_with_calibration(backbone, data, tmp_path, capsys):
    plain = quick(backbone).fit(data)
    calibrated = quick(backbone, calibration="temperature", verbose=True).fit(data)
    report = calibrated.calibration_
    assert plain.calibration_ is None
    assert set(report) == {"temperature", "rows", "nll_before", "nll_after", "ece_before", "ece_after"}
    assert report["temperature"] > 1 and report["nll_after"] < report["nll_before"]
    assert report["ece_after"] < report["ece_before"]
    assert f"T = {report['temperature']:.4f}" in capsys.readouterr().out
    assert calibrated.model_.temperature == report["temperature"]
    assert calibrated.validation_metrics_["ece_calibrated"] == report["ece_after"]
    # same weights (same seed): only the probabilities change, by logits / T
    texts = data["text"].head(30)
    assert list(calibrated.predict(texts)) == list(plain.predict(texts))
    logits = np.log(plain.predict_proba(texts).astype(np.float64))
    expected = torch.softmax(torch.from_numpy(logits) / report["temperature"], dim=1).numpy()
    np.testing.assert_allclose(calibrated.predict_proba(texts), expected, atol=1e-5)
    assert "ece" in calibrated.evaluate(data) and calibrated.evaluate(data)["ece"] != plain.evaluate(data)["ece"]
    # saved as "temperature"; the operator and from_pretrained agree
    folder = calibrated.save_pretrained(tmp_path / "clf")
    assert json.loads((folder / "config.json").read_text())["temperature"] == report["temperature"]
    out = DistributedDataClassifier(model_identifier=str(folder), score_field="p", autocast=False)(data[["text"]].head(30))
    np.testing.assert_allclose(np.stack(out["p"].to_list()), calibrated.predict_proba(texts), atol=1e-5)
    loaded = TextClassifier.from_pretrained(folder)
    assert loaded.model_.temperature == report["temperature"] and loaded.calibration_ == report
    # warm-start training drops the old temperature (the logits move)
    loaded.set_params(epochs=1, calibration=None).fit(data)
    assert loaded.model_.temperature == 1.0 and "temperature" not in loaded.model_.config


def test_calibrate_method_and_multi_label(backbone, data):
    clf = quick(backbone, problem="multi_label").fit(data, label_field="tags")
    before = clf.predict(data["text"])
    thresholds = clf.thresholds_.copy()
    clf.calibrate(data, label_field="tags")
    first = clf.calibration_["temperature"]
    assert first != 1.0 and clf.model_.temperature == first
    assert not np.allclose(clf.thresholds_, thresholds)
    assert [list(p) for p in clf.predict(data["text"])] == [list(p) for p in before]  # same decisions
    clf.calibrate(data, label_field="tags")  # fits on the raw logits again: same T
    assert clf.calibration_["temperature"] == pytest.approx(first, rel=1e-4)
    np.testing.assert_allclose(rescale_thresholds(clf.thresholds_, first, 1.0), thresholds, atol=1e-6)


def test_calibration_errors(backbone, data):
    with pytest.raises(InputError, match="regression model has no probabilities"):
        quick(backbone, problem="regression", calibration="temperature").fit(data.assign(y=1.0), label_field="y")
    with pytest.raises(InputError, match="calibration must be one of"):
        quick(backbone, calibration="platt").fit(data)
    with pytest.raises(InputError, match="there is none"):
        quick(backbone, calibration="temperature", validation_fraction=0.0).fit(data)
    regression = quick(backbone, problem="regression", epochs=1).fit(data.assign(y=1.0), label_field="y")
    with pytest.raises(InputError, match="calibrate\\(\\) is for classifiers"):
        regression.calibrate(data.assign(y=1.0), label_field="y")
    with pytest.raises(ModelLoadError, match="regression head cannot"):
        regression.model_.set_temperature(2.0)
    with pytest.raises(InputError, match="no rows with text"):
        quick(backbone, epochs=1).fit(data).calibrate(pd.DataFrame({"text": ["", None], "label": ["apple", "banana"]}))
