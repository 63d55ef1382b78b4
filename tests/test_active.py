"""Active learning: distributed top-n queries against pandas references, the strategies, bad input, the loop.

Tiny models only: TF-IDF + logistic regression through the scikit-learn adapter, the
fabricated NVIDIA-layout head checkpoint, and a frozen-backbone TextClassifier on a tiny
BERT. The last test runs the query path on a process-based LocalCluster.
"""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from nemo_cls_dask import DistributedDataClassifier, TextClassifier
from nemo_cls_dask.active import ActiveLearner, query
from nemo_cls_dask.active import diversity
from nemo_cls_dask.active.scoring import random_keys
from nemo_cls_dask.errors import InputError
from nemo_cls_dask.testing import make_backbone_checkpoint

sklearn = pytest.importorskip("sklearn")
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from nemo_cls_dask.lightweight import KimCNNClassifier, SklearnTextClassifier  # noqa: E402

FRUIT = ["apple", "banana", "cherry", "grape", "melon"]
SPACE = ["rocket", "planet", "comet", "orbit", "star"]
FILLER = ["the", "a", "of", "and", "with", "very", "green", "small", "today", "again"]


@pytest.fixture(autouse=True)
def synchronous():
    """Local tests run in this process (the LocalCluster test makes its own client)."""
    with dask.config.set(scheduler="synchronous"):
        yield


def toy_frame(n: int = 120, seed: int = 0, noise: float = 0.3) -> pd.DataFrame:
    """Two topics; some rows mix in a word of the other topic (those are the uncertain ones).

    A string index in no particular order, a few null/blank texts, an extra numeric column.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "fruit" if i % 2 == 0 else "space"
        words = list(rng.choice(FRUIT if label == "fruit" else SPACE, size=int(rng.integers(1, 4))))
        if rng.random() < noise:
            words += list(rng.choice(SPACE if label == "fruit" else FRUIT, size=int(rng.integers(1, 3))))
        words += list(rng.choice(FILLER, size=int(rng.integers(0, 3))))
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "truth": label, "x": float(i)})
    frame = pd.DataFrame(rows, index=pd.Index([f"row-{(i * 37) % n:03d}" for i in range(n)]))
    frame.iloc[[5, 40], 0] = None
    frame.iloc[77, 0] = "   "
    return frame


def tfidf_lr() -> SklearnTextClassifier:
    return SklearnTextClassifier(make_pipeline(TfidfVectorizer(), LogisticRegression(C=1.0)))


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return toy_frame()


@pytest.fixture(scope="module")
def adapter(frame) -> SklearnTextClassifier:
    """Fitted on a few rows only, so the rest of the pool has a spread of confidences."""
    return tfidf_lr().fit(frame.dropna().iloc[:16], text_field="text", label_field="truth")


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> str:
    return str(make_backbone_checkpoint(tmp_path_factory.mktemp("active") / "backbone"))


@pytest.fixture(scope="module")
def text_classifier(backbone, frame) -> TextClassifier:
    model = TextClassifier(backbone, frozen_backbone=True, epochs=3, learning_rate=1e-2, max_len=24,
                           max_batch_rows=32, verbose=False, seed=0, validation_fraction=0.0)
    return model.fit(frame.dropna().iloc[:40], text_field="text", label_field="truth")


def pool(frame: pd.DataFrame, npartitions: int = 7) -> dd.DataFrame:
    return dd.from_pandas(frame.drop(columns=["truth"]), npartitions=npartitions, sort=False)


def reference_scores(proba: np.ndarray, strategy: str) -> np.ndarray:
    """The strategies' scores written out directly (larger = more informative)."""
    if strategy == "least_confidence":
        return 1.0 - proba.max(axis=1)
    if strategy == "entropy":
        logs = np.log(np.where(proba > 0, proba, 1.0))  # 0 ln 0 = 0; NaN rows stay NaN
        return -(proba * logs).sum(axis=1)
    top = np.sort(proba, axis=1)[:, ::-1]
    return 1.0 - (top[:, 0] - top[:, 1])


def reference_top(frame: pd.DataFrame, scores: np.ndarray, n: int) -> pd.DataFrame:
    """The whole frame sorted by score, stable (ties keep frame order), NaN dropped."""
    ranked = frame.assign(query_score=scores).dropna(subset=["query_score"])
    return ranked.sort_values("query_score", ascending=False, kind="stable").head(n)


# ---------------------------------------------------------------------------- query: uncertainty


@pytest.mark.parametrize("strategy", ["least_confidence", "entropy", "breaking_ties"])
def test_top_n_equals_scoring_the_whole_frame_in_pandas(frame, adapter, strategy):
    data = frame.drop(columns=["truth"])
    expected = reference_top(data, reference_scores(adapter.predict_proba(data, text_field="text"), strategy), 15)
    for npartitions, split_every in ((1, 16), (7, 2), (13, 3)):
        got = query(pool(frame, npartitions), 15, model=adapter, strategy=strategy, split_every=split_every)
        assert list(got.index) == list(expected.index), (npartitions, split_every)
        assert list(got.columns) == ["text", "x", "query_score"]
        np.testing.assert_allclose(got["query_score"], expected["query_score"], rtol=1e-12, atol=1e-12)
        pd.testing.assert_frame_equal(got[["text", "x"]], data.loc[expected.index], check_dtype=False, check_index_type=False)
    assert got["query_score"].is_monotonic_decreasing


def test_operator_model_matches_its_eager_pandas_output(head_checkpoint, varied_texts):
    data = pd.DataFrame({"text": varied_texts + [None], "n": range(len(varied_texts) + 1)},
                        index=pd.Index(np.arange(len(varied_texts) + 1)[::-1] * 3))
    classifier = DistributedDataClassifier(model_identifier=head_checkpoint, label_field="q", batch_tokens=1024)
    eager = DistributedDataClassifier(model_identifier=head_checkpoint, label_field="q", score_field="p")(data)
    proba = np.array([np.full(3, np.nan) if p is None else p for p in pa.array(eager["p"]).to_pylist()], dtype=np.float64)
    for strategy in ("entropy", "least_confidence", "breaking_ties"):
        got = query(dd.from_pandas(data, npartitions=5, sort=False), 8, model=classifier, strategy=strategy)
        scores = reference_scores(proba, strategy)
        expected = reference_top(data, scores, 9)
        np.testing.assert_allclose(got["query_score"], expected["query_score"].iloc[:8], atol=1e-5)
        if (-np.diff(expected["query_score"].to_numpy())).min() > 1e-4:  # clear of float noise between batchings
            assert list(got.index) == list(expected.index[:8])
        else:
            assert set(got.index) <= set(expected.index)
        assert list(got.columns) == ["text", "n", "query_score"] and got.index.isin(data.index).all()


def test_exclusion(frame, adapter):
    ddf = pool(frame)
    first = query(ddf, 10, model=adapter, strategy="entropy")
    for exclude in (list(first.index[:4]), first.index[:4], first.head(4), first["x"].head(4)):
        got = query(ddf, 6, model=adapter, strategy="entropy", exclude=exclude)
        assert list(got.index) == list(first.index[4:10])
    rest = query(ddf, 1000, model=adapter, strategy="entropy", exclude=first.index)
    assert len(rest) == len(frame) - 3 - 10  # 3 rows have no text
    with pytest.raises(InputError, match="No row of the pool"):
        query(ddf, 1, model=adapter, exclude=list(frame.index))
    assert len(query(ddf, 3, model=adapter, exclude=["not-a-row"])) == 3  # unknown values are ignored


def test_ties_are_broken_by_frame_order(adapter):
    texts = ["apple rocket"] * 9 + ["apple apple"] * 3 + ["rocket comet"] * 3
    data = pd.DataFrame({"text": texts}, index=pd.Index([50, 3, 99, 7, 7, 12, 0, -4, 8, 1, 2, 5, 6, 11, 13]))
    results = {
        (parts, split): query(dd.from_pandas(data, npartitions=parts, sort=False), 5, model=adapter,
                              strategy="least_confidence", split_every=split)
        for parts, split in ((1, 2), (4, 2), (5, 16), (15, 3))
    }
    for got in results.values():
        assert list(got.index) == [50, 3, 99, 7, 7]  # equal scores: first in the frame first
        assert got["query_score"].nunique() == 1
        pd.testing.assert_frame_equal(got, results[(1, 2)])


def test_more_rows_than_the_pool_gives_all_scorable_rows(frame, adapter):
    got = query(pool(frame, 3), 500, model=adapter, strategy="breaking_ties")
    assert len(got) == len(frame) - 3 and got.index.is_unique  # null and blank text never returned
    assert got["query_score"].is_monotonic_decreasing
    assert not got["text"].isna().any()


# ---------------------------------------------------------------------------- query: random


def test_random_is_seeded_reproducible_and_independent_of_partitioning(frame):
    ddf = pool(frame)
    picks = {parts: query(pool(frame, parts), 20, strategy="random", seed=7) for parts in (1, 4, 11)}
    for got in picks.values():
        pd.testing.assert_frame_equal(got, picks[1])
    assert list(query(ddf, 20, strategy="random", seed=7).index) == list(picks[1].index)
    other = query(ddf, 20, strategy="random", seed=8)
    assert set(other.index) != set(picks[1].index)
    # the keys are a seeded hash of the index: a reference computed in pandas
    keys = pd.Series(random_keys(frame.index, 7), index=frame.index)[frame["text"].str.strip().fillna("") != ""]
    assert list(picks[1].index) == list(keys.sort_values(ascending=False, kind="stable").index[:20])
    # no model needed; spread over the whole pool, not the first rows
    positions = frame.index.get_indexer(picks[1].index)
    assert positions.min() < 20 and positions.max() > 100


def test_random_keys_look_uniform():
    keys = random_keys(pd.RangeIndex(20_000), 3)
    assert keys.min() >= 0 and keys.max() < 1 and len(np.unique(keys)) == len(keys)
    counts = np.histogram(keys, bins=10, range=(0, 1))[0]
    assert counts.min() > 1800 and counts.max() < 2200
    assert not np.array_equal(random_keys(pd.RangeIndex(5), 3), random_keys(pd.RangeIndex(5), 4))


# ---------------------------------------------------------------------------- query: diversity


def test_kmeans_and_k_center_on_obvious_clusters():
    rng = np.random.default_rng(0)
    directions = np.eye(4)[:3] * 10
    points = np.concatenate([d + rng.normal(0, 0.05, (20, 4)) for d in directions])
    picks = diversity.kmeans_picks(points, 3, seed=0)
    assert sorted(picks // 20) == [0, 1, 2] and len(set(picks)) == 3
    assert len(set(diversity.kmeans_picks(np.ones((10, 3)), 4, seed=0))) == 4  # identical points: still distinct rows
    picks = diversity.k_center_greedy(points, 3)
    assert picks[0] == 0 and sorted(picks // 20) == [0, 1, 2]
    # measured from labelled rows in the first two clusters: the third cluster comes first
    assert diversity.k_center_greedy(points, 1, labelled=points[[0, 20]])[0] // 20 == 2


def test_kmeans_picks_n_distinct_rows_among_the_most_uncertain(frame, text_classifier):
    ddf = pool(frame, 5)
    candidates = query(ddf, 25, model=text_classifier, strategy="entropy")
    got = query(ddf, 6, model=text_classifier, strategy="kmeans", candidates=25)
    assert len(got) == 6 and got.index.is_unique
    assert set(got.index) <= set(candidates.index)
    assert got["query_score"].is_monotonic_decreasing and list(got.columns) == ["text", "x", "query_score"]
    pd.testing.assert_frame_equal(got, query(ddf, 6, model=text_classifier, strategy="kmeans", candidates=25))
    assert len(query(ddf, 30, model=text_classifier, strategy="kmeans", candidates=30, exclude=candidates.index)) == 30


def test_coreset_moves_away_from_labelled_rows(frame, text_classifier):
    ddf = pool(frame, 5)
    first = query(ddf, 5, model=text_classifier, strategy="coreset", candidates=40)
    assert len(first) == 5 and first.index.is_unique
    top = query(ddf, 1, model=text_classifier, strategy="entropy")
    assert first.index[0] == top.index[0]  # nothing labelled: the most uncertain row starts
    second = query(ddf, 5, model=text_classifier, strategy="coreset", candidates=40, exclude=first.index)
    assert not set(second.index) & set(first.index)


def test_diversity_needs_embeddings(frame, adapter):
    ddf = pool(frame)
    with pytest.raises(InputError, match="embeddings"):
        query(ddf, 3, model=adapter, strategy="kmeans")
    kim = KimCNNClassifier(embedding_dim=8, num_filters=4, epochs=1, max_len=32, validation_fraction=0.0, device="cpu")
    kim.fit(frame.dropna().iloc[:20], text_field="text", label_field="truth")
    with pytest.raises(InputError, match="embeddings"):
        query(ddf, 3, model=kim, strategy="coreset")
    assert len(query(ddf, 3, model=kim, strategy="entropy")) == 3  # uncertainty works through its checkpoint
    with pytest.raises(InputError, match="embeddings"):
        query(ddf, 3, model=kim.as_operator(), strategy="kmeans")  # its operator: a KimCNN checkpoint


# ---------------------------------------------------------------------------- query: bad input


def test_bad_input_is_refused_at_call_time(frame, adapter, regression_checkpoint):
    ddf = pool(frame)
    for n in (0, -1, 2.5, True, None):
        with pytest.raises(InputError, match="n must be a positive integer"):
            query(ddf, n, model=adapter)
    with pytest.raises(InputError, match="strategy must be one of"):
        query(ddf, 3, model=adapter, strategy="confidence")
    with pytest.raises(InputError, match="Text column 'body'"):
        query(ddf, 3, model=adapter, text_field="body")
    with pytest.raises(InputError, match="already has a column 'x'"):
        query(ddf, 3, model=adapter, score_field="x")
    with pytest.raises(InputError, match="pass model="):
        query(ddf, 3, strategy="entropy")
    with pytest.raises(InputError, match="not fitted"):
        query(ddf, 3, model=tfidf_lr())
    with pytest.raises(InputError, match="regression model"):
        query(ddf, 3, model=DistributedDataClassifier(model_identifier=regression_checkpoint), strategy="entropy")
    with pytest.raises(InputError, match="must be a DistributedDataClassifier"):
        query(ddf, 3, model=LogisticRegression())
    with pytest.raises(InputError, match="candidates must be at least"):
        query(ddf, 5, model=DistributedDataClassifier(model_identifier="debian-topics"), strategy="kmeans", candidates=2)
    with pytest.raises(InputError, match="seed"):
        query(ddf, 3, strategy="random", seed=-1)
    with pytest.raises(InputError, match="not a dask collection"):
        query(ddf, 3, model=adapter, exclude=ddf)
    with pytest.raises(InputError, match="dask \\(or pandas\\) DataFrame"):
        query(frame["text"].tolist(), 3, model=adapter)
    empty = dd.from_pandas(frame.iloc[:0].drop(columns=["truth"]), npartitions=1)
    with pytest.raises(InputError, match="No row of the pool"):
        query(empty, 3, model=adapter)
    blank = dd.from_pandas(pd.DataFrame({"text": [None, " ", ""]}), npartitions=2)
    for strategy in ("random", "entropy"):
        with pytest.raises(InputError, match="null or blank"):
            query(blank, 1, model=adapter, strategy=strategy)


def test_regression_text_classifier_works_only_with_random(backbone, frame):
    model = TextClassifier(backbone, problem="regression", frozen_backbone=True, epochs=1, max_len=16,
                           verbose=False, validation_fraction=0.0)
    model.fit(frame.dropna().assign(y=lambda f: f["x"] / 100.0).iloc[:20], text_field="text", label_field="y")
    with pytest.raises(InputError, match="regression model"):
        query(pool(frame), 3, model=model, strategy="entropy")
    assert len(query(pool(frame), 3, model=model, strategy="random")) == 3


# ---------------------------------------------------------------------------- ActiveLearner


def test_active_learner_loop_on_a_separable_task(frame):
    template = tfidf_lr()
    truth = frame["truth"]
    test = toy_frame(200, seed=1, noise=0.0).dropna()
    learner = ActiveLearner(template, pool(frame), text_field="text")
    with pytest.raises(InputError, match="needs a fitted model"):
        learner.query(5, "entropy")
    rows = learner.initialize(6, seed=3)
    assert len(rows) == 6 and "query_score" in rows
    pd.testing.assert_frame_equal(rows, ActiveLearner(template, pool(frame, 2), text_field="text").initialize(6, seed=3))
    learner.update(rows.index, truth.loc[rows.index])
    if learner.labeled_["label"].nunique() < 2:  # the seeded draw has both classes; keep the test honest
        pytest.fail("initial draw has one class")
    seen = set(rows.index)
    for strategy in ("entropy", "breaking_ties", "least_confidence"):
        rows = learner.query(6, strategy)
        assert not set(rows.index) & seen
        seen |= set(rows.index)
        learner.update(rows.index, truth.loc[rows.index].to_numpy())
    assert learner.n_labeled == 24 and learner.labeled_.index.is_unique and set(learner.labeled_.index) == seen
    assert list(learner.labeled_.columns) == ["text", "x", "label"]
    assert (learner.labeled_["label"] == truth.loc[learner.labeled_.index]).all()
    assert [h["strategy"] for h in learner.history_] == ["random", "entropy", "breaking_ties", "least_confidence"]
    assert [h["labeled"] for h in learner.history_] == [6, 12, 18, 24]
    assert not hasattr(template, "estimator_")  # the template is never fitted
    assert learner.model_ is not template and learner.model_.get_params()["problem"] == "single_label"
    accuracy = (learner.model_.predict(test, text_field="text") == test["truth"].to_numpy()).mean()
    assert accuracy >= 0.9


def test_active_learner_update_checks(frame):
    learner = ActiveLearner(tfidf_lr(), pool(frame, 3), text_field="text")
    rows = learner.initialize(4, seed=0)
    with pytest.raises(InputError, match="one label per row"):
        learner.update(rows.index, ["fruit"])
    with pytest.raises(InputError, match="not in the pool"):
        learner.update(["nope"], ["fruit"])
    with pytest.raises(InputError, match="repeat"):
        learner.update([rows.index[0], rows.index[0]], ["fruit", "fruit"])
    with pytest.raises(InputError, match="missing"):
        learner.update(rows.index[:2], ["fruit", None])
    assert learner.n_labeled == 0
    # rows that were not offered are fetched from the pool (one distributed pass)
    learner.update(["row-000", "row-001"], ["fruit", "space"])
    assert list(learner.labeled_.index) == ["row-000", "row-001"] and learner.history_[0]["strategy"] is None
    assert learner.labeled_.loc["row-001", "x"] == frame.loc["row-001", "x"]
    with pytest.raises(InputError, match="labelled already"):
        learner.update(["row-001"], ["space"])
    duplicated = frame.drop(columns=["truth"]).rename(index={"row-002": "row-003"})
    with pytest.raises(InputError, match="more than once"):
        ActiveLearner(tfidf_lr(), dd.from_pandas(duplicated, npartitions=3, sort=False), text_field="text") \
            .update(["row-003"], ["fruit"])
    with pytest.raises(InputError, match="refits its model"):
        ActiveLearner(DistributedDataClassifier(model_identifier="debian-topics"), pool(frame))
    with pytest.raises(InputError, match="already has a column 'x'"):
        ActiveLearner(tfidf_lr(), pool(frame), label_field="x")
    with pytest.raises(InputError, match="set by the learner"):
        learner.query(3, "entropy", exclude=[])


def test_active_learner_with_a_text_classifier(backbone, frame):
    model = TextClassifier(backbone, frozen_backbone=True, epochs=2, learning_rate=1e-2, max_len=24,
                           verbose=False, seed=0, validation_fraction=0.0)
    learner = ActiveLearner(model, pool(frame, 4), text_field="text", label_field="topic")
    rows = learner.initialize(8, seed=1)
    learner.update(rows.index, frame.loc[rows.index, "truth"])
    rows = learner.query(4, "kmeans", candidates=12)
    assert len(rows) == 4 and not set(rows.index) & set(learner.labeled_.index)
    learner.update(rows.index, frame.loc[rows.index, "truth"])
    assert learner.n_labeled == 12 and learner.model_.labels_ and not hasattr(model, "model_")


def test_top_rows_is_a_stable_descending_sort(tmp_path):
    """dask's nlargest over the scored rows equals a stable descending sort of the whole frame
    (ties in frame order), on frames with ties, duplicate index values and NaN scores."""
    from nemo_cls_dask.active.topn import top_rows

    for seed in range(40):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 60))
        scores = rng.integers(0, 4, n).astype(float)
        scores[rng.random(n) < 0.2] = np.nan
        frame = pd.DataFrame({"s": scores, "row": np.arange(n)}, index=rng.integers(0, 8, n))
        ddf = dd.from_pandas(frame, npartitions=int(rng.integers(1, 6)), sort=False)
        k = int(rng.integers(1, 15))
        got = top_rows(ddf, k, "s", split_every=int(rng.integers(2, 4))).compute(scheduler="sync")
        expected = frame.dropna(subset=["s"]).sort_values("s", ascending=False, kind="stable").head(k)
        pd.testing.assert_frame_equal(got, expected)


# ---------------------------------------------------------------------------- on a LocalCluster


@pytest.mark.slow
def test_query_runs_on_cluster_workers(frame, adapter, head_checkpoint, varied_texts):
    from distributed import get_task_stream

    from nemo_cls_dask import get_client

    data = pd.DataFrame({"text": varied_texts}, index=pd.Index([f"t{i}" for i in range(len(varied_texts))]))
    classifier = DistributedDataClassifier(model_identifier=head_checkpoint, label_field="q", batch_tokens=1024)
    local = {
        "sklearn": query(pool(frame, 6), 7, model=adapter, strategy="entropy", split_every=2),
        "random": query(pool(frame, 6), 7, strategy="random", seed=2),
        "operator": query(dd.from_pandas(data, npartitions=4, sort=False), 5, model=classifier, strategy="least_confidence"),
    }
    client = get_client(n_workers=2, device="cpu", threads_per_worker=1)
    cluster = client.cluster
    try:
        client.wait_for_workers(2, timeout=120)
        with dask.config.set(scheduler=client.get), get_task_stream(client) as stream:
            remote = {
                "sklearn": query(pool(frame, 6), 7, model=adapter, strategy="entropy", split_every=2),
                "random": query(pool(frame, 6), 7, strategy="random", seed=2),
                "operator": query(dd.from_pandas(data, npartitions=4, sort=False), 5, model=classifier,
                                  strategy="least_confidence"),
            }
        workers = set(client.scheduler_info()["workers"])
        ran = {}
        for task in stream.data:
            name = str(task["key"][0] if isinstance(task["key"], tuple) else task["key"]).split("-")[0]
            ran.setdefault(name, set()).add(task["worker"])
        assert "nlargest" in ran, sorted(ran)  # the top-n tree (dask's nlargest) ran on the workers
        assert set().union(*ran.values()) <= workers
        for name, expected in local.items():
            pd.testing.assert_frame_equal(remote[name], expected, check_exact=name != "operator", atol=1e-5)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
