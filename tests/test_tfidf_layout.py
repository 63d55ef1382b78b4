"""The pickle-free ``tfidf-linear`` checkpoint layout: scikit-learn TF-IDF + linear models in the operator.

Models are fitted here on a small generated corpus (three topics, with accents, case,
punctuation, tabs and runs of spaces, so every analyzer step matters). Saved folders are
loaded by ``DistributedDataClassifier`` on a real ``LocalCluster`` (worker processes) and by
``nemo-cls-dask classify --model``, and compared with the fitted estimator's own
``predict_proba`` / ``predict``.

Tolerance for probabilities: 1e-5 absolute. The checkpoint stores float32 (scikit-learn
computes in float64) and the module sums in float32 in an order that may differ from
scipy's; the measured difference is ~1e-6 on every CPU tried. ``autocast=False`` keeps the
operator in fp32 on CPUs with bf16 support (AMX).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from nemo_cls_dask import DistributedDataClassifier, SklearnTextClassifier, describe_model
from nemo_cls_dask.errors import InputError, ModelLoadError
from nemo_cls_dask.lightweight import tfidf_checkpoint  # noqa: F401  (registers the layout on import)
from nemo_cls_dask.lightweight.tfidf_export import LayoutUnsupported, save_tfidf_linear
from nemo_cls_dask.lightweight.tfidf_terms import TermAnalyzer

ROOT = Path(__file__).resolve().parents[1]
TOPICS = {
    "fruit": ["Apple", "banana", "cherry", "Café", "crème", "brûlée", "jalapeño", "melon", "peach", "naïve"],
    "space": ["rocket", "Planet", "comet", "orbit", "star", "MOON", "galaxy", "nebula", "Ångström", "warp-drive"],
    "music": ["guitar", "drum", "rock'n'roll", "piano", "Song", "bass", "tempo", "chord", "opera", "jazz"],
}
COMMON = ["the", "a", "and", "of", "is", "with", "!", "?", "42", "x"]
TOL = 1e-5  # see the module docstring


def corpus(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    names = list(TOPICS)
    for _ in range(n):
        topic = names[int(rng.integers(0, 3))]
        words = list(rng.choice(TOPICS[topic], size=int(rng.integers(2, 7)))) + list(rng.choice(COMMON, size=3))
        words += list(rng.choice(TOPICS[names[int(rng.integers(0, 3))]], size=1))  # some noise
        rng.shuffle(words)
        separators = rng.choice([" ", " ", " ", "  ", "\t", ", "], size=len(words) - 1)
        text = words[0] + "".join(s + w for s, w in zip(separators, words[1:]))
        rows.append({"text": text, "topic": topic, "tags": sorted({topic, names[int(rng.integers(0, 3))]}),
                     "length": float(len(text)) / 10})
    return pd.DataFrame(rows)


TRAIN, TEST = corpus(300, 0), corpus(120, 1)
TEST.loc[3, "text"] = None
TEST.loc[7, "text"] = "   "
TEST.loc[11, "text"] = "zzz qqq"  # no known term: the intercept decides, as in scikit-learn
TEXTS = [t for t in TEST["text"] if isinstance(t, str) and t.strip()]


def scores(frame: pd.DataFrame, column: str, width: int) -> np.ndarray:
    out = np.full((len(frame), width), np.nan)
    for i, value in enumerate(frame[column]):
        if value is not None and hasattr(value, "__len__"):
            out[i] = np.asarray(value, dtype=float)
    return out


def valid_rows() -> np.ndarray:
    return TEST["text"].map(lambda t: isinstance(t, str) and bool(t.strip())).to_numpy()


@pytest.fixture(scope="module")
def cluster_client():
    """One real LocalCluster (two worker processes) for the module."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


# ---------------------------------------------------------------------------- the analyzer


ANALYZER_SETTINGS = [
    dict(analyzer="word"),
    dict(analyzer="word", ngram_range=(1, 3), stop_words="english"),
    dict(analyzer="word", ngram_range=(2, 2), lowercase=False, strip_accents="ascii", token_pattern=r"(?u)\b(\w)\w*\b"),
    dict(analyzer="char", ngram_range=(1, 4), strip_accents="unicode"),
    dict(analyzer="char_wb", ngram_range=(2, 5)),
    dict(analyzer="char_wb", ngram_range=(1, 1), lowercase=False),
]


def ours(vectorizer: TfidfVectorizer) -> TermAnalyzer:
    stop = vectorizer.get_stop_words() if vectorizer.analyzer == "word" else None
    return TermAnalyzer(vectorizer.analyzer, vectorizer.ngram_range, vectorizer.lowercase, vectorizer.strip_accents,
                        vectorizer.token_pattern if vectorizer.analyzer == "word" else None,
                        None if stop is None else list(stop))


@pytest.mark.parametrize("options", ANALYZER_SETTINGS, ids=lambda o: "-".join(f"{v}" for v in o.values()))
def test_terms_are_scikit_learns_on_the_corpus(options):
    vectorizer = TfidfVectorizer(**options)
    theirs, mine = vectorizer.build_analyzer(), ours(vectorizer)
    for text in list(TRAIN["text"]) + ["", " ", "a", "Ab\t\tc  d \n e", "ÉCOLE naïve", "x" * 3]:
        assert mine(text) == theirs(text), text


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "Z", "Mn", "Cc")), max_size=40),
       index=st.integers(0, len(ANALYZER_SETTINGS) - 1))
def test_terms_are_scikit_learns_on_any_text(text, index):
    vectorizer = TfidfVectorizer(**ANALYZER_SETTINGS[index])
    assert ours(vectorizer)(text) == vectorizer.build_analyzer()(text)


# ---------------------------------------------------------------------------- save -> operator on a cluster


def fitted(problem: str, vectorizer: TfidfVectorizer | None = None, final=None):
    vectorizer = vectorizer or TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    if problem == "regression":
        pipe = make_pipeline(vectorizer, final or Ridge(alpha=0.5))
        return pipe.fit(TRAIN["text"].tolist(), TRAIN["length"].to_numpy())
    if problem == "multi_label":
        final = final or OneVsRestClassifier(LogisticRegression(C=5.0, max_iter=1000))
        return SklearnTextClassifier(make_pipeline(vectorizer, final), problem="multi_label", threshold=0.4).fit(
            TRAIN, label_field="tags")
    final = final or LogisticRegression(C=10.0, max_iter=2000)
    return SklearnTextClassifier(make_pipeline(vectorizer, final)).fit(TRAIN, label_field="topic")


def run_operator(folder: Path, score_field: str | None = "s") -> pd.DataFrame:
    operator = DistributedDataClassifier(model_identifier=str(folder), label_field="p", score_field=score_field,
                                         autocast=False)
    return operator(dd.from_pandas(TEST[["text"]], npartitions=3)).compute()


CLASSIFIERS = [
    ("word-multinomial", TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2),
     LogisticRegression(C=10.0, max_iter=2000), "identity"),
    ("char_wb-sgd-ovr", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), norm="l1"),
     SGDClassifier(loss="log_loss", random_state=0), "ovr_normalized"),
    ("char-binary-noidf", TfidfVectorizer(analyzer="char", ngram_range=(1, 3), binary=True, use_idf=False,
                                          strip_accents="unicode"), LogisticRegression(max_iter=500), "identity"),
]


@pytest.mark.parametrize("name,vectorizer,final,link", CLASSIFIERS, ids=[c[0] for c in CLASSIFIERS])
def test_single_label_operator_gives_predict_proba(cluster_client, tmp_path, name, vectorizer, final, link):
    model = fitted("single_label", vectorizer, final)
    folder = model.save_pretrained(tmp_path / "model")
    info = describe_model(str(folder))
    assert info.layout == "tfidf-linear" and info.labels == ("fruit", "music", "space")
    assert info.config["tfidf_linear"]["link"] == link
    assert not list(folder.glob("*.joblib")) and not list(folder.glob("*.pkl"))
    out = run_operator(folder)
    valid = valid_rows()
    assert len(out) == len(TEST) and list(out.index) == list(TEST.index)
    assert out["p"].isna().to_numpy().tolist() == (~valid).tolist()
    expected = model.estimator_.predict_proba(TEXTS)
    assert np.abs(scores(out, "s", 3)[valid] - expected).max() < TOL
    assert (out["p"][valid].to_numpy(object) == model.predict(TEXTS)).all()


def test_two_class_model(cluster_client, tmp_path):
    frame = TRAIN.assign(space=np.where(TRAIN["topic"] == "space", "yes", "no"))
    model = SklearnTextClassifier(make_pipeline(TfidfVectorizer(), LogisticRegression())).fit(frame, label_field="space")
    out = run_operator(model.save_pretrained(tmp_path / "model"))
    assert np.abs(scores(out, "s", 2)[valid_rows()] - model.estimator_.predict_proba(TEXTS)).max() < TOL


def test_multi_label_operator_gives_predict_proba_and_threshold(cluster_client, tmp_path):
    model = fitted("multi_label")
    folder = model.save_pretrained(tmp_path / "model")
    assert json.loads((folder / "config.json").read_text())["thresholds"] == 0.4
    out = run_operator(folder)
    valid = valid_rows()
    expected = model.estimator_.predict_proba(TEXTS)
    assert np.abs(scores(out, "s", 3)[valid] - expected).max() < TOL
    predicted = [sorted(labels) for labels in model.predict(TEXTS)]
    assert [sorted(labels) for labels in out["p"][valid]] == predicted


def test_regression_operator_gives_predict(cluster_client, tmp_path):
    pipe = fitted("regression")
    folder = save_tfidf_linear(pipe, tmp_path / "model", output_names=["length"])
    info = describe_model(str(folder))
    assert info.problem_type == "regression" and info.labels is None
    out = run_operator(folder, score_field=None)
    valid = valid_rows()
    got = out["p"].to_numpy(dtype=float)
    assert np.isnan(got[~valid]).all()
    assert np.abs(got[valid] - pipe.predict(TEXTS)).max() < 1e-4  # float32 values of size ~3: 1e-4 absolute


def test_cli_classify_loads_the_folder(tmp_path):
    model = fitted("single_label")
    folder = model.save_pretrained(tmp_path / "model")
    data = tmp_path / "data"
    data.mkdir()
    TEST[["text"]].to_parquet(data / "part.parquet")
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "nemo_cls_dask", "classify", str(data), str(tmp_path / "out"), "--model",
                           str(folder), "--label-field", "topic", "--autocast", "fp32", "--n-workers", "1"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    out = pd.read_parquet(tmp_path / "out" / "part.parquet")
    valid = valid_rows()
    assert out["topic"].isna().to_numpy().tolist() == (~valid).tolist()
    assert (out["topic"][valid].to_numpy(object) == model.predict(TEXTS)).all()


def test_the_entry_point_is_declared():
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["nemo_cls_dask.layouts"]
    assert entry_points["tfidf-linear"] == "nemo_cls_dask.lightweight.tfidf_checkpoint"


# ---------------------------------------------------------------------------- refused at save time


@pytest.mark.parametrize("pipe,problem,message", [
    (lambda: make_pipeline(CountVectorizer(), LogisticRegression()), "single_label", "not a TfidfVectorizer"),
    (lambda: make_pipeline(TfidfVectorizer(), LinearSVC()), "single_label", "no predict_proba"),
    (lambda: make_pipeline(TfidfVectorizer(), SGDClassifier(loss="modified_huber", random_state=0)), "single_label",
     "neither the softmax"),
    (lambda: make_pipeline(TfidfVectorizer(tokenizer=str.split, token_pattern=None), LogisticRegression()),
     "single_label", "custom preprocessor/tokenizer"),
    (lambda: LogisticRegression(), "single_label", "not a two-step Pipeline"),
])
def test_unsupported_models_are_refused_at_save_time(tmp_path, pipe, problem, message):
    model = pipe()
    if hasattr(model, "steps"):
        model.fit(TRAIN["text"].tolist(), TRAIN["topic"].to_numpy())
    with pytest.raises(LayoutUnsupported, match=message) as error:
        save_tfidf_linear(model, tmp_path / "model", problem=problem)
    assert "SklearnTextClassifier.save(path): a joblib pickle" in str(error.value)
    assert not (tmp_path / "model").exists()


def test_a_label_never_on_is_refused_with_the_reason(tmp_path):
    tags = TRAIN["tags"]  # "never" is on in no row
    model = SklearnTextClassifier(make_pipeline(TfidfVectorizer(), OneVsRestClassifier(LogisticRegression())),
                                  problem="multi_label", labels=["fruit", "music", "space", "never"])
    matrix = np.array([[label in row for label in ["fruit", "music", "space", "never"]] for row in tags], dtype=int)
    with pytest.warns(UserWarning):
        model.estimator.fit(TRAIN["text"].tolist(), matrix)
    with pytest.raises(LayoutUnsupported, match="constant predictor"):
        save_tfidf_linear(model.estimator, tmp_path / "model", problem="multi_label")


def test_existing_files_are_never_overwritten(tmp_path):
    model = fitted("single_label")
    folder = model.save_pretrained(tmp_path / "model")
    before = (folder / "config.json").read_bytes()
    with pytest.raises(InputError, match="already holds"):
        model.save_pretrained(folder)
    assert (folder / "config.json").read_bytes() == before


# ---------------------------------------------------------------------------- untrusted folders


def edited(tmp_path: Path, change) -> Path:
    folder = fitted("single_label").save_pretrained(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    change(config, folder)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("change,message", [
    (lambda c, f: c["tfidf_linear"].update(num_features=10**12), "over the limit"),
    (lambda c, f: c["tfidf_linear"].update(num_features=c["tfidf_linear"]["num_features"] + 1), "does not match"),
    (lambda c, f: c["tfidf_linear"].update(num_outputs=2), "id2label with one label per output"),
    (lambda c, f: c["tfidf_linear"].update(link="exp"), "link one of"),
    (lambda c, f: c["tfidf_linear"].update(extra=1), "exactly the keys"),
    (lambda c, f: c["analyzer"].update(token_pattern="(a)(b)"), "at most one is allowed"),
    (lambda c, f: c["analyzer"].update(ngram_range=[1, 1000]), "ngram_range"),
    (lambda c, f: c.update(vocab_file="../elsewhere.json"), "a file name inside the folder"),
    (lambda c, f: (f / "tfidf_vocab.json").write_text(" " * (c["tfidf_linear"]["num_features"] * 300)), "too large"),
])
def test_bad_folders_are_refused_when_described(tmp_path, change, message):
    folder = edited(tmp_path, change)
    with pytest.raises(ModelLoadError, match=message):
        describe_model(str(folder))


def test_vocabulary_size_mismatch_is_refused_when_loaded(tmp_path):
    from nemo_cls_dask.lightweight.tfidf_checkpoint import load_term_tokenizer

    def drop_a_term(config, folder):
        vocab = json.loads((folder / "tfidf_vocab.json").read_text())
        vocab["terms"] = vocab["terms"][:-1]
        (folder / "tfidf_vocab.json").write_text(json.dumps(vocab))

    info = describe_model(str(edited(tmp_path, drop_a_term)))
    with pytest.raises(ModelLoadError, match="terms but config.json declares"):
        load_term_tokenizer(info)
    with dask.config.set(scheduler="sync"), pytest.raises(ModelLoadError, match="terms but config.json declares"):
        run_operator(info.path)
