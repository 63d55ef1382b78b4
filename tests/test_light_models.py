"""Light models: the fitted vocabulary, KimCNN, its estimator and checkpoint, the scikit-learn adapter.

Tiny models on toy text that a character model separates easily; every test runs on CPU
in about a second.
"""

from __future__ import annotations

import json
import warnings

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import torch

from nemo_cls_dask import DistributedDataClassifier, classify, describe_model, frames
from nemo_cls_dask.errors import InputError, ModelLoadError
from nemo_cls_dask.lightweight import KimCNN, KimCNNClassifier, SklearnTextClassifier, TextVocab
from nemo_cls_dask.lightweight.vocab import PAD_ID, UNK_ID, VOCAB_FILE, vocab_fingerprint
from nemo_cls_dask.models.loading import clear_models, get_model

FRUIT = ["apple", "banana", "cherry", "grape", "melon"]
SPACE = ["rocket", "planet", "comet", "orbit", "star"]


def toy_frame(n: int = 160, seed: int = 0) -> pd.DataFrame:
    """Two topics with disjoint words (and so different characters): easy to separate."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "fruit" if i % 2 == 0 else "space"
        words = rng.choice(FRUIT if label == "fruit" else SPACE, size=int(rng.integers(1, 6)))
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


def tiny(**params) -> KimCNNClassifier:
    defaults = dict(embedding_dim=16, num_filters=16, epochs=8, learning_rate=5e-3, early_stopping_patience=None,
                    max_batch_rows=32)
    return KimCNNClassifier(**(defaults | params))


@pytest.fixture(scope="module")
def fitted() -> KimCNNClassifier:
    return tiny().fit(toy_frame())


@pytest.fixture(scope="module")
def checkpoint(fitted, tmp_path_factory):
    folder = tmp_path_factory.mktemp("kimcnn")
    fitted.save_pretrained(folder)
    return folder


def mixed_frame() -> pd.DataFrame:
    """Texts with nulls, blanks and non-strings, under a duplicated non-range index."""
    texts = ["apple banana", None, "rocket star", "", "   ", "Melon!", 3.5, "orbit comet planet", "grape", "zzz qqq"]
    return pd.DataFrame({"text": texts, "id": range(len(texts))}, index=[7, 7, 3, 100, -1, 5, 5, 0, 2, 9])


# ---------------------------------------------------------------------------------- vocabulary


def test_vocab_special_ids_frequency_order_and_unknown_characters():
    vocab = TextVocab("char").fit(["aab", "ab", "c", None, 3])
    assert vocab.tokens[:2] == ["<pad>", "<unk>"] and vocab.pad_token_id == PAD_ID == 0 and vocab.unk_token_id == UNK_ID == 1
    assert vocab.tokens[2:] == ["a", "b", "c"]  # most frequent first, ties in code point order
    ids = vocab(["abc", "a€z"], truncation=False)["input_ids"]
    assert ids == [[2, 3, 4], [2, UNK_ID, UNK_ID]]  # unseen characters are the unknown id, no error
    assert vocab.decode([2, UNK_ID, 0, 0]) == "a<unk>"


def test_vocab_min_freq_max_size_and_normalisation():
    texts = ["Héllo  World\n", "ＨＥＬＬＯ wide"]  # full-width letters become ASCII under NFKC
    vocab = TextVocab("char", min_freq=2).fit(texts)
    assert "h" in vocab.tokens and "H" not in vocab.tokens and "w" in vocab.tokens
    assert "\n" not in vocab.tokens and "d" in vocab.tokens and "r" not in vocab.tokens  # 'r' once; whitespace runs -> " "
    assert vocab.normalize("  A\t\tB \n") == "a b"
    cased = TextVocab("char", lowercase=False, unicode_normalization=None).fit(texts)
    assert "H" in cased.tokens and "Ｈ" in cased.tokens
    capped = TextVocab("char", max_size=4).fit(["aaab", "b", "c"])
    assert len(capped) == 4 and capped.tokens[2:] == ["a", "b"]
    assert capped(["c"])["input_ids"] == [[UNK_ID]]


def test_vocab_word_level_truncation_padding_and_single_text():
    vocab = TextVocab("word").fit(["Don't stop!", "stop now"])
    assert vocab.split("Don't STOP!") == ["don", "'", "t", "stop", "!"]
    out = vocab(["stop now", "never stop now ok"], truncation=True, max_length=2, padding=True,
                add_special_tokens=True, return_attention_mask=True, return_token_type_ids=False)
    stop, now = vocab.tokens.index("stop"), vocab.tokens.index("now")
    assert out["input_ids"] == [[stop, now], [UNK_ID, stop]]
    assert out["attention_mask"] == [[1, 1], [1, 1]]
    assert vocab("stop")["input_ids"] == [stop]
    padded = vocab(["stop", "stop now"], padding="longest", return_attention_mask=True)
    assert padded["input_ids"][0] == [stop, PAD_ID] and padded["attention_mask"][0] == [1, 0]


def test_vocab_save_load_fingerprint_and_errors(tmp_path):
    vocab = TextVocab("char").fit(["hello world"])
    path = vocab.save(tmp_path)
    assert path.name == VOCAB_FILE
    again = TextVocab.load(path)
    assert again.tokens == vocab.tokens and again("hello")["input_ids"] == vocab("hello")["input_ids"]
    other = tmp_path / "copy"
    other.mkdir()
    vocab.save(other)
    assert vocab_fingerprint(path) == vocab_fingerprint(other / VOCAB_FILE)
    TextVocab("char", lowercase=False).fit(["hello world"]).save(other)
    assert vocab_fingerprint(path) != vocab_fingerprint(other / VOCAB_FILE)  # settings are part of the file
    (tmp_path / "bad.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ModelLoadError, match="not a nemo_cls_dask text vocabulary"):
        TextVocab.load(tmp_path / "bad.json")
    with pytest.raises(InputError, match="not fitted"):
        TextVocab()(["x"])
    with pytest.raises(InputError, match="level"):
        TextVocab("byte")
    with pytest.raises(InputError, match="strings"):
        vocab(["ok", None])


# ---------------------------------------------------------------------------------- the module


def test_kimcnn_padding_never_changes_a_row_and_short_rows_work():
    torch.manual_seed(0)
    model = KimCNN(20, 3, embedding_dim=8, num_filters=4, kernel_sizes=(3, 4, 5), dropout=0.5).eval()
    rows = [[5, 6, 7, 8, 9, 10, 11], [4], [3, 9]]  # two rows shorter than the largest kernel
    with torch.no_grad():
        alone = [model(torch.tensor([row]), torch.ones(1, len(row), dtype=torch.long)) for row in rows]
        width = 12
        for side in ("right", "left"):
            ids = torch.zeros(len(rows), width, dtype=torch.long)
            mask = torch.zeros(len(rows), width, dtype=torch.long)
            for i, row in enumerate(rows):
                span = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
                ids[i, span] = torch.tensor(row)
                mask[i, span] = 1
            batch = model(ids, mask)
            for i in range(len(rows)):
                torch.testing.assert_close(batch[i : i + 1], alone[i], rtol=1e-5, atol=1e-6)
        # Without a mask, id 0 is taken as padding: same outputs.
        torch.testing.assert_close(model(ids)[1:2], alone[1], rtol=1e-5, atol=1e-6)
    assert all(torch.isfinite(out).all() for out in alone)


# ---------------------------------------------------------------------------------- training


def test_training_reduces_loss_and_learns_a_separable_task(fitted):
    losses = [record["train_loss"] for record in fitted.history_]
    assert losses[-1] < 0.5 * losses[0]
    test = toy_frame(60, seed=1)
    assert fitted.evaluate(test)["accuracy"] == 1.0
    assert list(fitted.predict(["cherry melon", "star orbit"])) == ["fruit", "space"]
    proba = fitted.predict_proba(np.array(["apple", "comet"]))
    assert proba.shape == (2, 2) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert fitted.labels_ == ("fruit", "space") and fitted.n_train_rows_ == 144  # 10% held out
    assert "accuracy" in fitted.history_[-1]["validation"]


def test_same_seed_same_weights_other_seed_other_weights():
    frame = toy_frame(60)
    first = tiny(epochs=2).fit(frame).model_.state_dict()
    second = tiny(epochs=2).fit(frame).model_.state_dict()
    other = tiny(epochs=2, seed=1).fit(frame).model_.state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_early_stopping_keeps_the_best_epoch():
    rng = np.random.default_rng(3)
    noise = pd.DataFrame({"text": ["".join(rng.choice(list("abcdefgh"), 12)) for _ in range(120)],
                          "label": rng.choice(["x", "y"], 120)})  # labels unrelated to text: overfits fast
    valid = noise.iloc[80:]
    clf = tiny(epochs=40, learning_rate=2e-2, early_stopping_patience=2, dropout=0.0).fit(noise.iloc[:80], validation=valid)
    assert len(clf.history_) < 40
    best = clf.history_[clf.best_epoch_ - 1]["validation"]["loss"]
    assert best == min(record["validation"]["loss"] for record in clf.history_)
    proba = clf.predict_proba(valid)
    codes = valid["label"].map({"x": 0, "y": 1}).to_numpy()
    restored = float(-np.log(proba[np.arange(len(codes)), codes]).mean())
    assert restored == pytest.approx(best, rel=1e-4)  # the weights are the best epoch's


def test_fit_on_lists_word_level_and_unknown_words():
    frame = toy_frame(80)
    clf = tiny(level="word", min_freq=1).fit(frame["text"].tolist(), frame["label"].to_numpy())
    assert clf.vocab_.level == "word" and "apple" in clf.vocab_.tokens
    assert clf.vocab_("apple zzz", truncation=False)["input_ids"][1] == UNK_ID
    assert list(clf.predict(["apple zzz", "zzz star"])) == ["fruit", "space"]  # unknown words map to <unk>
    assert torch.count_nonzero(clf.model_.embedding.weight[UNK_ID]) == 0  # never in training: still neutral
    assert clf.max_len is None and clf._inference_max_len() == 256


def test_multi_label_and_regression():
    frame = toy_frame(120)
    frame["tags"] = [["edible"] + (["long"] if len(t.split()) > 2 else []) if label == "fruit" else
                     (["long"] if len(t.split()) > 2 else []) for t, label in zip(frame["text"], frame["label"])]
    multi = tiny(problem="multi_label", epochs=15).fit(frame, label_field="tags")
    assert multi.labels_ == ("edible", "long") and multi.thresholds_.shape == (2,)
    assert multi.evaluate(frame, label_field="tags")["micro_f1"] > 0.8
    predicted = multi.predict(["apple banana cherry melon", "star"])
    assert "edible" in predicted[0] and "edible" not in predicted[1]
    frame["words"] = frame["text"].str.split().map(len).astype("float64")
    reg = tiny(problem="regression", epochs=15).fit(frame, label_field="words")
    values = reg.predict(frame)
    assert values.shape == (len(frame),) and values.dtype == np.float32
    assert reg.evaluate(frame, label_field="words")["mse"] < frame["words"].var() / 2
    with pytest.raises(InputError, match="regression"):
        reg.predict_proba(frame)


# ---------------------------------------------------------------------------------- checkpoint and operator


def test_checkpoint_layout_and_describe(checkpoint, fitted):
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["architecture"] == "kimcnn" and config["id2label"] == {"0": "fruit", "1": "space"}
    assert config["problem_type"] == "single_label_classification" and config["max_len"] == 1024
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / VOCAB_FILE).is_file()
    info = describe_model(str(checkpoint))
    assert info.layout == "kimcnn" and info.labels == ("fruit", "space") and info.num_outputs == 2
    assert info.tokenizer_key == vocab_fingerprint(checkpoint / VOCAB_FILE)
    clear_models()
    loaded = get_model(str(checkpoint), device="cpu")
    assert isinstance(loaded.tokenizer, TextVocab) and isinstance(loaded.module, KimCNN)


def test_round_trip_through_the_operator_on_pandas_and_dask(checkpoint, fitted):
    frame = mixed_frame()
    expected = fitted.predict_proba(frame)
    assert np.isnan(expected[[1, 3, 4, 6]]).all() and not np.isnan(expected[[0, 2, 5, 7, 8, 9]]).any()
    again = KimCNNClassifier.from_pretrained(checkpoint)
    np.testing.assert_array_equal(again.predict_proba(frame), expected)
    operator = DistributedDataClassifier(model_identifier=str(checkpoint), label_field="topic", score_field="proba",
                                         batch_tokens=16, autocast=False)  # small batches: padding in play; fp32 as predict_proba
    eager = operator(frame)
    ddf = dd.from_pandas(frame, npartitions=3, sort=False)
    lazy = operator(ddf)
    computed = lazy.compute(scheduler="sync")
    # dask turns the object column into strings (3.5 -> "3.5"): compare with that input
    in_dask = fitted.predict_proba(ddf.compute(scheduler="sync"))
    for out, want in ((eager, expected), (computed, in_dask)):
        assert list(out.index) == list(frame.index) and list(out["id"]) == list(frame["id"])
        scores = np.array([np.full(2, np.nan) if v is None or v is pd.NA else np.asarray(v) for v in out["proba"].tolist()])
        np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-6)
        assert out["topic"].isna().tolist() == np.isnan(want).any(axis=1).tolist()
    assert (computed.dtypes == lazy._meta.dtypes).all()
    lazy_proba = fitted.predict_proba(dd.from_pandas(frame, npartitions=2, sort=False)).compute(scheduler="sync")
    np.testing.assert_allclose(lazy_proba.to_numpy(), in_dask, rtol=1e-5, atol=1e-6)
    assert list(lazy_proba.columns) == ["fruit", "space"] and list(lazy_proba.index) == list(frame.index)


def test_one_pass_classify_shares_the_vocabulary(checkpoint, tmp_path):
    copy = tmp_path / "copy"
    KimCNNClassifier.from_pretrained(checkpoint).save_pretrained(copy)
    assert describe_model(str(copy)).tokenizer_key == describe_model(str(checkpoint)).tokenizer_key
    frame = toy_frame(20)
    first = DistributedDataClassifier(model_identifier=str(checkpoint), label_field="a", score_field="pa")
    second = DistributedDataClassifier(model_identifier=str(copy), label_field="b", score_field="pb")
    out = classify(dd.from_pandas(frame, npartitions=2, sort=False), [first, second]).compute(scheduler="sync")
    assert out["a"].tolist() == out["b"].tolist() == frame["label"].tolist()


def test_cli_classifies_with_a_kimcnn_checkpoint(checkpoint, tmp_path):
    from nemo_cls_dask.cli import main

    source = tmp_path / "in"
    source.mkdir()
    toy_frame(12).to_json(source / "part.jsonl", orient="records", lines=True)
    output = tmp_path / "out"
    assert main(["classify", str(source), str(output), "--model", str(checkpoint), "--n-workers", "1"]) == 0
    out = pd.read_json(output / "part.jsonl", lines=True)
    assert out["preds"].tolist() == out["label"].tolist()  # a worker process loaded the vocabulary


def test_broken_checkpoints_fail_when_described(checkpoint, tmp_path):
    import shutil

    broken = tmp_path / "no-vocab"
    shutil.copytree(checkpoint, broken)
    (broken / VOCAB_FILE).unlink()
    with pytest.raises(ModelLoadError, match="vocabulary"):
        DistributedDataClassifier(model_identifier=str(broken))(toy_frame(4))
    config = json.loads((checkpoint / "config.json").read_text())
    config["kimcnn"]["num_filters"] = 7
    wrong = tmp_path / "wrong-shape"
    shutil.copytree(checkpoint, wrong)
    (wrong / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="does not match"):
        KimCNNClassifier.from_pretrained(wrong)


# ---------------------------------------------------------------------------------- bad input and parameters


def test_bad_input_errors(fitted):
    with pytest.raises(InputError, match="not fitted"):
        KimCNNClassifier().predict(["x"])
    with pytest.raises(InputError, match="columns"):
        tiny().fit(toy_frame(10), label_field="topic")
    with pytest.raises(InputError, match="at least two classes"):
        tiny().fit(pd.DataFrame({"text": ["a b", "c d"], "label": ["x", "x"]}))
    with pytest.raises(InputError, match="missing"):
        tiny().fit(pd.DataFrame({"text": ["a b", "c d"], "label": ["x", None]}))
    with pytest.raises(InputError, match="in memory"):
        tiny().fit(dd.from_pandas(toy_frame(10), npartitions=2))
    with pytest.raises(InputError, match="null or blank"):
        tiny().fit(pd.DataFrame({"text": [None, " "], "label": ["x", "y"]}))
    with pytest.raises(InputError, match="level"):
        tiny(level="byte").fit(toy_frame(10))
    with pytest.raises(InputError, match="threshold_objective must be one of"):
        tiny(problem="multi_label", threshold_objective="f2").fit(toy_frame(10))
    with pytest.raises(InputError, match="kernel_sizes"):
        tiny(kernel_sizes=()).fit(toy_frame(10))
    with pytest.raises(InputError, match="Text column"):
        fitted.predict(pd.DataFrame({"body": ["x"]}))
    with pytest.raises(InputError, match="single string"):
        fitted.predict("apple")


def test_sklearn_parameter_protocol():
    from sklearn.base import clone

    clf = KimCNNClassifier(level="word", kernel_sizes=(2, 3))
    assert clf.get_params()["kernel_sizes"] == (2, 3)
    assert repr(clf) == "KimCNNClassifier(kernel_sizes=(2, 3), level='word')"  # scikit-learn's repr: changed params only
    copy = clone(clf)
    assert copy.get_params() == clf.get_params() and copy is not clf
    assert clf.set_params(epochs=3) is clf and clf.epochs == 3
    with pytest.raises(InputError, match="Invalid parameter"):
        clf.set_params(nope=1)


# ---------------------------------------------------------------------------------- scikit-learn adapter


def tfidf_lr():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3)), LogisticRegression(max_iter=500))


@pytest.fixture(scope="module")
def adapter() -> SklearnTextClassifier:
    return SklearnTextClassifier(tfidf_lr()).fit(toy_frame(), text_field="text", label_field="label")


def test_sklearn_adapter_fit_predict_evaluate(adapter):
    assert adapter.labels_ == ("fruit", "space") and adapter.estimator_ is not adapter.estimator
    texts = ["apple melon", "comet star"]
    np.testing.assert_allclose(adapter.predict_proba(texts), adapter.estimator_.predict_proba(texts))
    assert list(adapter.predict(texts + [None])) == ["fruit", "space", None]
    assert adapter.evaluate(toy_frame(40, seed=2))["accuracy"] == 1.0
    assert adapter.get_params()["estimator__logisticregression__max_iter"] == 500
    adapter_copy = SklearnTextClassifier(tfidf_lr()).set_params(estimator__logisticregression__C=3.0)
    assert adapter_copy.estimator.steps[1][1].C == 3.0


def test_sklearn_operator_equals_the_estimator_on_pandas_and_dask(adapter):
    frame = mixed_frame()
    frame.loc[frame["id"] == 6, "text"] = None  # dask would turn the float 3.5 into the string "3.5"
    valid = np.array([isinstance(t, str) and t.strip() != "" for t in frame["text"]])
    expected = adapter.estimator_.predict_proba([t for t, ok in zip(frame["text"], valid) if ok])
    operator = adapter.as_operator(label_field="topic", score_field="proba")
    lazy = operator(dd.from_pandas(frame, npartitions=3, sort=False))
    eager = operator(frame)
    computed = lazy.compute(scheduler="sync")
    for out in (eager, computed):
        assert list(out.index) == list(frame.index) and list(out.columns) == ["text", "id", "topic", "proba"]
        assert out["topic"].dtype == frames.LABEL_DTYPE and out["proba"].dtype == frames.SCORE_LIST_DTYPE
        assert out["topic"].isna().tolist() == (~valid).tolist() and out["proba"].isna().tolist() == (~valid).tolist()
        scores = np.array([np.asarray(v) for v, ok in zip(out["proba"].tolist(), valid) if ok])
        np.testing.assert_allclose(scores, expected, rtol=1e-6)
        assert out["topic"][valid].tolist() == list(adapter.estimator_.classes_[expected.argmax(axis=1)])
    assert (computed.dtypes == lazy._meta.dtypes).all()
    proba = adapter.predict_proba(dd.from_pandas(frame, npartitions=2, sort=False)).compute(scheduler="sync")
    np.testing.assert_allclose(proba.to_numpy()[valid], expected, rtol=1e-6)
    # an empty partition
    empty = operator(dd.from_pandas(frame.iloc[:0], npartitions=1)).compute(scheduler="sync")
    assert len(empty) == 0 and list(empty.columns) == ["text", "id", "topic", "proba"]
    assert operator(mixed_frame())["topic"].isna().tolist()[6]  # a float in a pandas object column: null


class CountingEstimator:
    """A fitted estimator that counts its predict_proba calls (to see when work happens)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.classes_ = inner.classes_
        self.calls = 0

    def fit(self, X, y):
        return self

    def predict_proba(self, X):
        self.calls += 1
        return self.inner.predict_proba(X)


def test_sklearn_operator_is_lazy_and_runs_once_per_partition(adapter):
    counting = CountingEstimator(adapter.estimator_)
    operator = SklearnTextClassifier(counting, prefit=True).as_operator(label_field="topic")
    lazy = operator(dd.from_pandas(toy_frame(30), npartitions=3, sort=False))
    assert counting.calls == 0
    out = lazy.compute(scheduler="sync")
    assert counting.calls == 3 and out["topic"].tolist() == toy_frame(30)["label"].tolist()


def test_sklearn_multi_label_and_prefit():
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    frame = toy_frame(80)
    frame["tags"] = [["edible", "food"] if label == "fruit" else ["far"] for label in frame["label"]]
    model = SklearnTextClassifier(make_pipeline(TfidfVectorizer(), OneVsRestClassifier(LogisticRegression(C=20))),
                                  problem="multi_label").fit(frame, label_field="tags")
    assert model.labels_ == ("edible", "far", "food")
    out = model.as_operator(label_field="tags_pred")(frame.head(6))
    assert out["tags_pred"].dtype == frames.LABEL_LIST_DTYPE
    assert [sorted(tags) for tags in out["tags_pred"].tolist()] == [sorted(tags) for tags in frame["tags"].head(6)]
    assert model.evaluate(frame, label_field="tags")["micro_f1"] == 1.0
    pipe = tfidf_lr().fit(frame["text"], frame["label"])
    prefit = SklearnTextClassifier(pipe, prefit=True)
    np.testing.assert_allclose(prefit.predict_proba(["apple"]), pipe.predict_proba(["apple"]))
    with pytest.raises(InputError, match="prefit=True"):
        prefit.fit(frame)
    with pytest.raises(InputError, match="not fitted"):
        SklearnTextClassifier(tfidf_lr(), prefit=True).as_operator()(frame)


def test_sklearn_bad_input_errors(adapter):
    from sklearn.svm import LinearSVC

    frame = toy_frame(10)
    ddf = dd.from_pandas(frame, npartitions=2)
    with pytest.raises(InputError, match="not fitted"):
        SklearnTextClassifier(tfidf_lr()).as_operator()(ddf)  # at apply time, before compute
    with pytest.raises(InputError, match="Text column 'body'"):
        adapter.as_operator(text_field="body")(ddf)
    with pytest.raises(InputError, match="already exist"):
        adapter.as_operator(label_field="label")(ddf)
    with pytest.raises(InputError, match="predict_proba"):
        SklearnTextClassifier(LinearSVC()).fit(frame)
    with pytest.raises(InputError, match="at least two classes"):
        SklearnTextClassifier(tfidf_lr()).fit(frame.assign(label="x"))
    with pytest.raises(InputError, match="columns"):
        SklearnTextClassifier(tfidf_lr()).fit(frame, label_field="topic")
    with pytest.raises(InputError, match="problem"):
        SklearnTextClassifier(tfidf_lr(), problem="regression").fit(frame)


def test_sklearn_save_warns_pickle_and_load_needs_consent(adapter, tmp_path):
    path = tmp_path / "model.joblib"
    with pytest.warns(UserWarning, match="pickle"):
        adapter.save(path)
    with pytest.raises(InputError, match="allow_pickle=True"):
        SklearnTextClassifier.load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = SklearnTextClassifier.load(path, allow_pickle=True)
    np.testing.assert_allclose(loaded.predict_proba(["apple"]), adapter.predict_proba(["apple"]))
