"""TextClassifier: training, saving into the operator's layout, inference, bad input."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import dask.dataframe as dd

from nemo_cls_dask import DistributedDataClassifier, InputError, TextClassifier, TrainingError
from nemo_cls_dask.testing import make_backbone_checkpoint
from nemo_cls_dask.train.metrics import macro_f1, multilabel_f1, tune_thresholds
from nemo_cls_dask.train.optim import lr_schedule, parameter_groups

FILLER = "the of and to a in is it you that he was for on are with as".split()


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return str(make_backbone_checkpoint(tmp_path_factory.mktemp("train") / "backbone"))


def fruit_frame(n: int = 160, seed: int = 0) -> pd.DataFrame:
    """Learnable synthetic data: 'apple' texts vs 'banana' texts, tags, and a numeric target."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = ("apple", "banana")[i % 2]
        tags = sorted({label} | ({"water"} if rng.random() < 0.5 else set()))
        words = list(rng.choice(FILLER, 5)) + [label, label] + (["water"] if "water" in tags else [])
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label, "tags": tags, "y": 1.0 + 2.0 * (label == "apple"), "z": float(len(tags))})
    return pd.DataFrame(rows)


def quick(backbone: str, **kwargs) -> TextClassifier:
    params = dict(epochs=3, learning_rate=1e-3, max_len=24, batch_tokens=384, max_batch_rows=32, verbose=False, seed=0)
    params.update(kwargs)
    return TextClassifier(backbone, **params)


@pytest.fixture(scope="module")
def data():
    return fruit_frame()


@pytest.fixture(scope="module")
def fitted(backbone, data):
    """One fitted model per problem type (shared by the tests that only read them)."""
    return {
        "single_label": quick(backbone, epochs=4).fit(data),
        "multi_label": quick(backbone, problem="multi_label", epochs=4).fit(data, label_field="tags"),
        "regression": quick(backbone, problem="regression", epochs=4).fit(data, label_field=["y", "z"]),
    }


# ---------------------------------------------------------------------------- conventions


def test_sklearn_conventions(backbone, data):
    clf = TextClassifier(backbone, epochs=1, labels=None, verbose=False)
    params = clf.get_params()
    assert params["backbone"] == backbone and params["epochs"] == 1 and "seed" in params
    assert clf.set_params(epochs=2) is clf and clf.epochs == 2
    with pytest.raises(InputError, match="Invalid parameter"):
        clf.set_params(nope=1)
    assert not hasattr(clf, "model_")
    assert "epochs=2" in repr(clf)
    sklearn_base = pytest.importorskip("sklearn.base")
    clone = sklearn_base.clone(clf)
    assert clone.get_params() == clf.get_params()


def test_fit_returns_self_and_fitted_state(fitted):
    clf = fitted["single_label"]
    assert clf.labels_ == ("apple", "banana")
    assert clf.thresholds_ is None and clf.history_ and clf.n_train_rows_ > 0
    assert isinstance(clf.model_, torch.nn.Module)


@pytest.mark.parametrize("problem", ["single_label", "multi_label", "regression"])
def test_each_problem_learns(fitted, problem):
    history = fitted[problem].history_
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["validation"]["loss"] < history[0]["validation"]["loss"]


def test_predict_shapes_and_inputs(fitted, data):
    clf = fitted["single_label"]
    texts = data["text"].head(6)
    from_list = clf.predict_proba(texts.tolist())
    assert from_list.shape == (6, 2) and np.allclose(from_list.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(clf.predict_proba(texts.to_numpy()), from_list, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(texts), from_list, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(data.head(6)), from_list, atol=1e-6)
    assert set(clf.predict(texts.tolist())) <= {"apple", "banana"}
    # blank text: no prediction, as in the operator
    proba = clf.predict_proba(["apple apple", "   ", None])
    assert np.isnan(proba[1:]).all() and not np.isnan(proba[0]).any()
    assert list(clf.predict(["apple apple", ""]))[1] is None
    multi = fitted["multi_label"].predict(texts)
    assert all(isinstance(value, list) for value in multi)
    regression = fitted["regression"].predict(texts)
    assert regression.shape == (6, 2) and regression.dtype == np.float32


def test_evaluate(fitted, data):
    single = fitted["single_label"].evaluate(data)
    assert set(single) == {"accuracy", "macro_f1", "ece"} and 0 <= single["accuracy"] <= 1
    multi = fitted["multi_label"].evaluate(data, label_field="tags")
    assert {"micro_f1", "macro_f1", "per_label_f1"} <= set(multi)
    assert set(multi["per_label_f1"]) == {"apple", "banana", "water"}
    regression = fitted["regression"].evaluate(data, label_field=["y", "z"])
    assert set(regression) == {"mse", "mae"}


# ---------------------------------------------------------------------------- saving / operator


@pytest.mark.parametrize("problem", ["single_label", "multi_label", "regression"])
def test_saved_model_runs_in_operator_with_same_outputs(fitted, data, problem, tmp_path):
    clf = fitted[problem]
    folder = clf.save_pretrained(tmp_path / "clf")
    config = json.loads((folder / "config.json").read_text())
    for key in ("base_model", "fc_dropout", "max_len", "pooling", "problem_type", "backbone_config"):
        assert key in config
    ddf = dd.from_pandas(data[["text"]].head(40), npartitions=3)
    scored = DistributedDataClassifier(
        model_identifier=str(folder), score_field=None if problem == "regression" else "proba"
    )(ddf).compute(scheduler="sync")
    if problem == "regression":
        operator = np.stack(scored["preds"].to_list())
        np.testing.assert_allclose(operator, clf.predict(data.head(40)), atol=1e-5)
        lazy = clf.predict(ddf)
        np.testing.assert_allclose(lazy.compute(scheduler="sync").to_numpy(), operator, atol=1e-5)
        return
    operator = np.stack(scored["proba"].to_list())
    np.testing.assert_allclose(operator, clf.predict_proba(data.head(40)), atol=1e-5)
    lazy = clf.predict_proba(ddf)
    assert list(lazy.columns) == list(clf.labels_)
    np.testing.assert_allclose(lazy.compute(scheduler="sync").to_numpy(), operator, atol=1e-5)
    predicted = clf.predict(data.head(40))
    assert [list(p) if isinstance(p, (list, np.ndarray)) else p for p in scored["preds"]] == list(predicted)
    if problem == "multi_label":
        assert config["thresholds"] == pytest.approx(list(clf.thresholds_))
        assert len(config["thresholds"]) == 3 and config["problem_type"] == "multi_label_classification"


def test_from_pretrained_round_trip(fitted, data, tmp_path):
    clf = fitted["multi_label"]
    folder = clf.save_pretrained(tmp_path / "clf")
    loaded = TextClassifier.from_pretrained(folder)
    assert loaded.labels_ == clf.labels_ and loaded.problem == "multi_label"
    np.testing.assert_allclose(loaded.thresholds_, clf.thresholds_)
    np.testing.assert_allclose(loaded.predict_proba(data.head(10)), clf.predict_proba(data.head(10)), atol=1e-6)
    loaded.set_params(epochs=1).fit(data, label_field="tags")  # warm start continues training
    assert loaded.labels_ == clf.labels_


def test_frozen_backbone_head_only(backbone, data, tmp_path):
    from safetensors.torch import load_file

    clf = quick(backbone, frozen_backbone=True, learning_rate=1e-2, epochs=6).fit(data)
    assert clf.history_[-1]["train_loss"] < clf.history_[0]["train_loss"]
    folder = clf.save_pretrained(tmp_path / "head")
    assert set(load_file(folder / "model.safetensors")) == {"fc.weight", "fc.bias"}
    ddf = dd.from_pandas(data[["text"]].head(20), npartitions=2)
    scored = DistributedDataClassifier(model_identifier=str(folder), score_field="p")(ddf).compute(scheduler="sync")
    np.testing.assert_allclose(np.stack(scored["p"].to_list()), clf.predict_proba(data.head(20)), atol=1e-5)
    # the backbone really stayed as it was
    reloaded = TextClassifier.from_pretrained(folder)
    np.testing.assert_allclose(reloaded.predict_proba(data.head(5)), clf.predict_proba(data.head(5)), atol=1e-6)


# ---------------------------------------------------------------------------- training options


def test_seed_reproducibility(backbone, data):
    def weights(seed):
        clf = quick(backbone, epochs=1, seed=seed).fit(data)
        return {k: v.clone() for k, v in clf.model_.state_dict().items()}

    first, second, other = weights(3), weights(3), weights(4)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_sample_weight_and_class_weight_change_loss(backbone, data):
    base = quick(backbone, epochs=1, validation_fraction=0).fit(data).history_[0]["train_loss"]
    weights = np.where(data["label"] == "apple", 3.0, 0.5)
    weighted = quick(backbone, epochs=1, validation_fraction=0).fit(data, sample_weight=weights).history_[0]["train_loss"]
    skewed = pd.concat([data, data[data["label"] == "apple"]], ignore_index=True)
    plain = quick(backbone, epochs=1, validation_fraction=0).fit(skewed).history_[0]["train_loss"]
    balanced = quick(backbone, epochs=1, validation_fraction=0, class_weight="balanced").fit(skewed).history_[0]["train_loss"]
    assert weighted != pytest.approx(base, rel=1e-3)
    assert balanced != pytest.approx(plain, rel=1e-3)
    # a weight column works too
    by_column = quick(backbone, epochs=1, validation_fraction=0).fit(data.assign(w=weights), sample_weight="w")
    assert by_column.history_[0]["train_loss"] == pytest.approx(weighted, rel=1e-5)


def test_early_stopping_keeps_best(backbone):
    train = fruit_frame(80, seed=1)
    rng = np.random.default_rng(5)
    train["label"] = rng.permutation(train["label"].to_numpy())  # noise: validation loss soon rises
    valid = fruit_frame(40, seed=2)
    clf = quick(backbone, frozen_backbone=True, learning_rate=0.3, epochs=12, early_stopping_patience=2, warmup_ratio=0.0,
                lr_schedule="constant", fc_dropout=0.0)
    clf.fit(train, validation=valid)
    losses = [h["validation"]["loss"] for h in clf.history_]
    assert len(losses) < 12
    best = int(np.argmin(losses))
    assert clf.best_epoch_ == best + 1 and len(losses) == best + 1 + 2
    proba = clf.predict_proba(valid)
    codes = (valid["label"] == "banana").to_numpy().astype(int)
    log_loss = -np.log(proba[np.arange(len(codes)), codes]).mean()
    assert log_loss == pytest.approx(losses[best], rel=1e-4)


def test_thresholds_tuned_on_validation(fitted, backbone, data):
    clf = fitted["multi_label"]
    assert clf.thresholds_.shape == (3,) and not np.allclose(clf.thresholds_, 0.5)
    assert "tuned_micro_f1" in clf.validation_metrics_
    assert clf.validation_metrics_["tuned_micro_f1"] >= clf.validation_metrics_["micro_f1"] - 1e-12
    # each objective's thresholds are the best of their kind on the validation outputs
    per_label = quick(backbone, problem="multi_label", epochs=4, threshold_objective="label_f1").fit(data, label_field="tags")
    assert per_label.validation_metrics_["tuned_macro_f1"] >= clf.validation_metrics_["tuned_macro_f1"] - 1e-12
    assert clf.validation_metrics_["tuned_micro_f1"] >= per_label.validation_metrics_["tuned_micro_f1"] - 1e-12
    with pytest.raises(InputError, match="threshold_objective must be one of"):
        quick(backbone, problem="multi_label", threshold_objective="f2").fit(data, label_field="tags")


def test_mc_dropout(fitted, data, backbone, tmp_path):
    samples = fitted["single_label"].predict_proba(data.head(4), dropout_sampling=5)
    assert samples.shape == (4, 5, 2)
    assert samples.var(axis=1).max() > 0
    assert fitted["regression"].predict(data.head(4), dropout_sampling=3).shape == (4, 3, 2)
    # no dropout anywhere: a clear error
    folder = make_backbone_checkpoint(tmp_path / "nodrop")
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    clf = quick(str(folder), epochs=1, fc_dropout=0.0).fit(data)
    with pytest.raises(InputError, match="dropout"):
        clf.predict_proba(data.head(2), dropout_sampling=2)


def test_options_run(backbone, data):
    clf = quick(backbone, epochs=2, gradient_accumulation_steps=2, layerwise_lr_decay=0.8, lr_schedule="cosine",
                gradual_unfreezing=True, autocast="bf16")
    clf.fit(data)
    assert len(clf.history_) == 2


def test_gradual_unfreezing_first_epoch_trains_only_head(backbone, data):
    clf = quick(backbone, epochs=1, gradual_unfreezing=True).fit(data)
    from transformers import AutoModel

    original = AutoModel.from_pretrained(backbone).state_dict()
    trained = clf.model_.model.state_dict()
    assert all(torch.equal(original[k], trained[k]) for k in original)


def test_layerwise_lr_decay_groups(fitted):
    model = fitted["single_label"].model_
    groups = parameter_groups(model, learning_rate=1.0, head_learning_rate=10.0, weight_decay=0.1,
                              layerwise_lr_decay=0.5, train_backbone=True)
    by_depth = {g["depth"]: g["lr"] for g in groups}
    assert by_depth[-1] == 10.0 and by_depth[0] == 1.0 and by_depth[1] == 0.5 and by_depth[2] == 0.25  # 2 layers: embeddings depth 2
    embeddings = [g for g in groups if any("embeddings" in n for n in g["names"])]
    assert embeddings and all(g["depth"] == 2 for g in embeddings)
    assert all(g["weight_decay"] == 0.0 for g in groups if all(n.endswith("bias") for n in g["names"]))
    assert lr_schedule("linear", 0.1, 1000)(50) == pytest.approx(0.5) and lr_schedule("linear", 0.1, 1000)(1000) == 0.0
    assert lr_schedule("cosine", 0.1, 1000)(550) == pytest.approx(0.5)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_lr_schedule_is_transformers_get_scheduler(schedule):
    """The curve is transformers.get_scheduler's stepped on a real optimizer, and equals the
    closed forms the package used to write by hand (warmup, then linear/cosine/constant)."""
    import math

    from transformers import get_scheduler

    total, warmup = 200, 0.15
    factor = lr_schedule(schedule, warmup, total)
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=1.0)
    name = {"constant": "constant_with_warmup"}.get(schedule, schedule)
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=30, num_training_steps=total)
    stepped = []
    for _ in range(total + 1):
        stepped.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()

    def by_hand(step: int) -> float:
        progress = step / total
        if progress < warmup:
            return progress / warmup
        rest = (progress - warmup) / (1 - warmup)
        return {"constant": 1.0, "cosine": 0.5 * (1 + math.cos(math.pi * rest)), "linear": max(0.0, 1 - rest)}[schedule]

    ours = np.array([factor(step) for step in range(total + 1)])
    np.testing.assert_array_equal(ours, np.array(stepped))  # the same function, bit for bit
    np.testing.assert_allclose(ours, [by_hand(step) for step in range(total + 1)], rtol=0, atol=1e-12)  # float64 round-off


def test_dask_training_streams_partitions(backbone, data):
    import dask

    with dask.config.set({"dataframe.convert-string": False}):  # keep the list column as lists
        ddf = dd.from_pandas(data, npartitions=4)
    clf = quick(backbone, problem="multi_label", epochs=2).fit(ddf, label_field="tags")
    assert clf.labels_ == ("apple", "banana", "water")
    assert clf.history_[-1]["train_loss"] < clf.history_[0]["train_loss"]
    assert len(clf.predict_proba(data.head(3))) == 3


def test_multi_label_with_separator(backbone, data):
    frame = data.assign(tags=data["tags"].map("|".join))
    clf = quick(backbone, problem="multi_label", label_sep="|", epochs=1).fit(frame, label_field="tags")
    assert clf.labels_ == ("apple", "banana", "water")


# ---------------------------------------------------------------------------- bad input


def test_labels_without_training_rows_warn(backbone, data):
    with pytest.warns(UserWarning, match="cherry"):
        clf = quick(backbone, epochs=1, labels=["apple", "banana", "cherry"]).fit(data)
    assert clf.labels_ == ("apple", "banana", "cherry")


def test_training_labels_outside_labels_error(backbone, data):
    with pytest.raises(InputError, match="banana"):
        quick(backbone, epochs=1, labels=["apple", "cherry"]).fit(data)


def test_single_class_error(backbone, data):
    with pytest.raises(InputError, match="at least two classes"):
        quick(backbone, epochs=1).fit(data[data["label"] == "apple"])


def test_nan_targets_error(backbone, data):
    broken = data.copy()
    broken.loc[[1, 4, 7], "label"] = None
    with pytest.raises(InputError, match=r"'label' has 3 NaN"):
        quick(backbone, epochs=1).fit(broken)
    broken = data.copy()
    broken.loc[[2, 3], "y"] = np.nan
    with pytest.raises(InputError, match=r"'y' has 2 NaN"):
        quick(backbone, problem="regression", epochs=1).fit(broken, label_field="y")


def test_empty_texts_are_kept(backbone, data):
    frame = data.copy()
    frame.loc[[0, 1, 2], "text"] = ["", "   ", None]
    clf = quick(backbone, epochs=1, validation_fraction=0).fit(frame)
    assert clf.n_train_rows_ == len(frame)


def test_validation_with_unknown_labels(backbone, data):
    valid = fruit_frame(20, seed=3)
    valid.loc[0, "label"] = "cherry"
    with pytest.raises(InputError, match=r"\['cherry'\]"):
        quick(backbone, epochs=1).fit(data, validation=valid)


@pytest.mark.parametrize(
    "problem, column, message",
    [("single_label", "y", "regression"), ("single_label", "tags", "single_label"),
     ("multi_label", "label", "label_sep"), ("regression", "label", "numeric")],
)
def test_wrong_label_type(backbone, data, problem, column, message):
    with pytest.raises(InputError, match=message):
        quick(backbone, problem=problem, epochs=1).fit(data, label_field=column)


def test_non_finite_loss_raises(backbone, data):
    frame = data.assign(y=np.where(np.arange(len(data)) == 3, np.inf, data["y"]))
    with pytest.raises(TrainingError, match="loss became"):
        quick(backbone, problem="regression", epochs=1).fit(frame, label_field="y")


def test_bad_params(backbone, data):
    with pytest.raises(InputError, match="problem"):
        TextClassifier(backbone, problem="multiclass").fit(data)
    with pytest.raises(InputError, match="class_weight"):
        TextClassifier(backbone, problem="regression", class_weight="balanced").fit(data, label_field="y")
    with pytest.raises(InputError, match="not fitted"):
        TextClassifier(backbone).predict(["x"])


# ---------------------------------------------------------------------------- metrics


def test_metrics():
    assert macro_f1(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2) == pytest.approx((2 / 3 + 0.8) / 2)
    micro, macro, per_label = multilabel_f1(np.array([[1, 0], [1, 1]]), np.array([[1, 0], [0, 1]]))
    assert per_label.tolist() == pytest.approx([2 / 3, 1.0]) and micro == pytest.approx(0.8)
    truth = np.array([[1], [1], [0], [0]], bool)
    proba = np.array([[0.9], [0.4], [0.3], [0.1]])
    threshold = tune_thresholds(truth, proba)[0]
    assert 0.3 < threshold < 0.4
    assert tune_thresholds(np.zeros((3, 1), bool), proba[:3])[0] == 0.5


def _best_micro_by_brute_force(truth: np.ndarray, proba: np.ndarray) -> float:
    """The best micro-F1 over every combination of per-label cuts (tiny problems only)."""
    import itertools

    options = [np.r_[np.unique(proba[:, j]), np.inf] for j in range(proba.shape[1])]
    return max(multilabel_f1(truth, proba >= np.array(cut)[None, :])[0] for cut in itertools.product(*options))


@pytest.mark.parametrize("seed", range(6))
def test_micro_f1_thresholds_reach_the_best_cut_of_each_label(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random((14, 3)) < [0.5, 0.3, 0.15]
    proba = np.clip(truth * 0.3 + rng.random((14, 3)) * 0.7, 0, 1).round(2)  # informative, with ties
    thresholds = tune_thresholds(truth, proba)
    micro = multilabel_f1(truth, proba >= thresholds[None, :])[0]
    # a coordinate-wise optimum: no single label's cut improves micro-F1
    for j in range(proba.shape[1]):
        for cut in np.r_[np.unique(proba[:, j]), np.inf]:
            trial = thresholds.copy()
            trial[j] = cut
            assert multilabel_f1(truth, proba >= trial[None, :])[0] <= micro + 1e-12
    assert micro >= multilabel_f1(truth, proba >= 0.5)[0] - 1e-12  # never worse than where it starts
    assert micro >= 0.9 * _best_micro_by_brute_force(truth, proba)
    assert ((thresholds > 0) & (thresholds < 1)).all()


def test_threshold_objectives_differ_as_documented():
    # label 1 is rare: its own best F1 takes a cut with many false positives, which costs micro-F1
    truth = np.array([[1, 0], [1, 0], [1, 0], [1, 0], [0, 1], [0, 0], [0, 0], [0, 0]], bool)
    proba = np.array([[0.9, 0.6], [0.8, 0.55], [0.7, 0.5], [0.6, 0.45], [0.2, 0.4], [0.1, 0.3], [0.1, 0.2], [0.1, 0.1]])
    per_label = tune_thresholds(truth, proba, objective="label_f1")
    micro = tune_thresholds(truth, proba, objective="micro_f1")
    assert 0.3 < per_label[1] < 0.4  # label 1 alone: predicting 5 rows for its 1 positive gives F1 1/3
    assert micro[1] > 0.6  # micro-F1: label 1 predicts nothing
    assert multilabel_f1(truth, proba >= micro)[0] > multilabel_f1(truth, proba >= per_label)[0]
    assert multilabel_f1(truth, proba >= per_label)[2][1] > multilabel_f1(truth, proba >= micro)[2][1]
    with pytest.raises(ValueError, match="objective must be one of"):
        tune_thresholds(truth, proba, objective="accuracy")
