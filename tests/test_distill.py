"""Distillation (issue 19): teacher pass, resume, held-out split, soft targets, every problem type, CLI.

Teachers are tiny: KimCNN models fitted here on a two-topic toy corpus (so their labels
mean something and a student can be checked to copy them), and the random tiny
checkpoints of ``nemo_cls_dask.testing`` behind the NVIDIA classes. Most runs use dask's
synchronous scheduler; one test runs on a process-based ``LocalCluster``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from nemo_cls_dask import (
    DistributedDataClassifier,
    FineWebEduClassifier,
    KimCNNClassifier,
    QualityClassifier,
    SklearnTextClassifier,
    describe_model,
    distill,
)
from nemo_cls_dask.distillation import store
from nemo_cls_dask.distillation.split import heldout_mask, unit_hash
from nemo_cls_dask.distillation.students import expand_soft, fit_student, make_student
from nemo_cls_dask.errors import InputError
from nemo_cls_dask.testing import make_backbone_checkpoint

FRUIT = ["apple", "banana", "cherry", "grape", "melon", "peach", "plum", "lime"]
SPACE = ["rocket", "planet", "comet", "orbit", "star", "moon", "galaxy", "nebula"]

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def toy_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Texts mixing fruit and space words; ``topic`` is the majority, ``fruit_share`` the share."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        size = int(rng.integers(2, 8))
        fruit = int(rng.integers(0, size + 1))
        words = list(rng.choice(FRUIT, size=fruit)) + list(rng.choice(SPACE, size=size - fruit))
        rng.shuffle(words)
        tags = (["fruit"] if fruit else []) + (["space"] if fruit < size else [])
        rows.append({"text": " ".join(words), "topic": "fruit" if 2 * fruit >= size else "space",
                     "tags": tags, "fruit_share": fruit / size})
    return pd.DataFrame(rows)


def kimcnn(problem: str, **params) -> KimCNNClassifier:
    defaults = dict(level="word", min_freq=1, embedding_dim=16, num_filters=16, epochs=10, learning_rate=5e-3,
                    early_stopping_patience=None, validation_fraction=0.0, max_batch_rows=32, device="cpu")
    return KimCNNClassifier(problem=problem, **(defaults | params))


@pytest.fixture(scope="module")
def single_teacher() -> KimCNNClassifier:
    return kimcnn("single_label").fit(toy_frame(seed=1), label_field="topic")


@pytest.fixture(scope="module")
def pool() -> pd.DataFrame:
    frame = toy_frame(seed=2)
    frame.loc[5, "text"] = None  # null and blank texts are counted and left out, never dropped silently
    frame.loc[9, "text"] = "   "
    return frame


def sync():
    return dask.config.set(scheduler="sync")


# ---------------------------------------------------------------------------- split and soft targets


def test_heldout_split_is_a_seeded_hash_of_the_text():
    texts = [f"document number {i}" for i in range(2000)]
    mask = heldout_mask(texts, 0.2, seed=3)
    assert 0.17 < mask.mean() < 0.23
    assert np.array_equal(mask, heldout_mask(list(reversed(texts)), 0.2, seed=3)[::-1])  # order-free
    assert not np.array_equal(mask, heldout_mask(texts, 0.2, seed=4))
    assert heldout_mask(["same", "same", "same"], 0.5, seed=0).tolist() in ([True] * 3, [False] * 3)
    # Stable across processes (Python's own str hash is salted per process; this is not).
    code = "from nemo_cls_dask.distillation.split import unit_hash; print(repr(unit_hash('café', 7)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=os.environ | {"PYTHONHASHSEED": "123"})
    assert float(out.stdout) == unit_hash("café", 7)
    with pytest.raises(InputError, match="heldout_fraction"):
        heldout_mask(texts, 1.0, seed=0)


def test_soft_expansion_is_the_teachers_distribution():
    proba = np.array([[0.7, 0.25, 0.05], [0.001, 0.004, 0.995], [0.34, 0.33, 0.33]])
    rows, labels, weights = expand_soft(["a", "b", "c"], proba, ("x", "y", "z"), min_prob=0.01)
    for i in range(3):
        got = {label: w for r, label, w in zip(rows, labels, weights) if r == i}
        kept = {name: p for name, p in zip("xyz", proba[i]) if p >= 0.01}
        assert got == pytest.approx({k: v / sum(kept.values()) for k, v in kept.items()}, abs=1e-12)
    assert list(labels[rows == 1]) == ["z"]  # the teacher's label is always kept


def test_soft_targets_make_the_student_learn_probabilities(head_checkpoint):
    """Multinomial LR with an unpenalized intercept matches, on its training rows, the mean of
    whatever targets it was given: the teacher's probabilities when soft, label counts when hard.
    The teacher is a random tiny DeBERTa: unsure, so the two means differ."""
    frame = toy_frame(n=300, seed=5)
    teacher = DistributedDataClassifier(model_identifier=head_checkpoint, label_field="label", score_field="proba")
    out = teacher(frame[["text"]])
    proba = np.stack(out["proba"].to_numpy()).astype(np.float64)
    names = teacher.describe().labels
    labels = out["label"].to_numpy(dtype=object)
    counts = pd.Series(labels).value_counts(normalize=True).reindex(list(names), fill_value=0).to_numpy()
    assert np.abs(proba.mean(axis=0) - counts).max() > 0.015  # 5x the tolerance below; otherwise the test could not tell soft from hard
    texts = frame["text"].tolist()
    for kind in ("soft", "hard"):
        student = fit_student(make_student("tfidf", "single_label"), texts, proba, labels, "single_label",
                              names, kind, seed=0, soft_min_prob=0.0)
        learned = pd.Series(student.predict_proba(texts).mean(axis=0), index=student.fitted()[1]).reindex(list(names), fill_value=0)
        target = proba.mean(axis=0) if kind == "soft" else counts
        # lbfgs stops at a gradient tolerance: a few 1e-4 off the exact optimum.
        assert np.abs(learned.to_numpy() - target).max() < 3e-3, kind


def test_multi_label_soft_targets_make_each_label_learn_probabilities():
    """One-vs-rest logistic regressions with unpenalized intercepts match, on their training rows,
    each label's mean target: the teacher's probabilities when soft, the share of rows with the
    label on (p >= 0.5) when hard. The probabilities are drawn so that the two differ by ~0.05."""
    frame = toy_frame(n=300, seed=6)
    rng = np.random.default_rng(0)
    names = ("fruit", "space")
    proba = rng.uniform(0.2, 0.7, size=(len(frame), 2))
    labels = [[name for name, p in zip(names, row) if p >= 0.5] for row in proba]
    texts = frame["text"].tolist()
    hard_share = (proba >= 0.5).mean(axis=0)
    assert np.abs(proba.mean(axis=0) - hard_share).min() > 0.015  # 5x the tolerance below
    for kind in ("soft", "hard"):
        student = fit_student(make_student("tfidf", "multi_label"), texts, proba, labels, "multi_label", names, kind,
                              seed=0, soft_min_prob=0.0)
        assert student.fitted()[1] == names
        learned = student.predict_proba(texts).mean(axis=0)
        target = proba.mean(axis=0) if kind == "soft" else hard_share
        # lbfgs stops at a gradient tolerance: a few 1e-4 off the exact optimum.
        assert np.abs(learned - target).max() < 3e-3, kind


def test_multi_label_kimcnn_and_transformer_students_learn_probabilities(tmp_path):
    """Neural students take a multi-label teacher's probabilities as soft labels (BCE against p).
    Every probability is under 0.5, so hard labels would leave every label off (the student
    would learn ~0); soft ones make the mean predicted probability the mean target, ~0.3 and
    ~0.2. Tolerance 0.05: Adam after a few epochs sits near, not at, the optimum; 0 is 4x that away."""
    from nemo_cls_dask import TextClassifier

    frame = toy_frame(n=240, seed=7)
    rng = np.random.default_rng(1)
    names = ("fruit", "space")
    proba = np.c_[rng.uniform(0.1, 0.5, len(frame)), rng.uniform(0.05, 0.35, len(frame))]
    texts = frame["text"].tolist()
    backbone = make_backbone_checkpoint(tmp_path / "backbone")
    students = {
        "kimcnn": kimcnn("multi_label", epochs=15),
        "transformer": TextClassifier(str(backbone), problem="multi_label", frozen_backbone=True, epochs=15,
                                      learning_rate=1e-2, validation_fraction=0.0, early_stopping_patience=None,
                                      verbose=False, device="cpu", autocast=False),
    }
    for name, student in students.items():
        fitted = fit_student(student, texts, proba, [[] for _ in texts], "multi_label", names, "soft", seed=0,
                             soft_min_prob=0.0)
        assert tuple(fitted.labels_) == names, name
        learned = fitted.predict_proba(texts).mean(axis=0)
        assert np.abs(learned - proba.mean(axis=0)).max() < 0.05, (name, learned)
    with pytest.raises(InputError, match=r"label 'fruit' has probability 1.5"):
        kimcnn("multi_label").fit(pd.DataFrame({"text": ["a", "b"], "tags": [{"fruit": 1.5}, {"space": 0.2}]}),
                                  label_field="tags")


def test_true_labelled_rows_train_the_student_too(single_teacher, pool, tmp_path):
    # "zebra" is in no pool text: only the true rows can teach the student that it means fruit.
    true = pd.DataFrame({"text": [f"zebra {w}" for w in SPACE * 5], "topic": "fruit"})
    ddf = dd.from_pandas(pool, npartitions=2)
    with sync():
        result = distill(single_teacher, "tfidf", ddf, work_dir=tmp_path / "work", model_out=tmp_path / "s1",
                         labelled=true, labelled_field="topic", speed_rows=0)
        plain = distill(single_teacher, "tfidf", ddf, work_dir=tmp_path / "work", model_out=tmp_path / "s2",
                        speed_rows=0)
    assert result.labelled_rows == len(true) and f"+ {len(true)} true-labelled" in result.summary()
    assert result.train_rows == plain.train_rows and plain.labelled_rows == 0
    assert plain.teacher_partitions_run == [] and plain.teacher_partitions_reused == [0, 1]  # the teacher ran once
    assert result.student.predict(["zebra zebra zebra"])[0] == "fruit"
    fruit = list(result.student.fitted()[1]).index("fruit")
    assert result.student.predict_proba(["zebra"])[0, fruit] > plain.student.predict_proba(["zebra"])[0, fruit] + 0.2
    with pytest.raises(InputError, match=r"labels the teacher does not have: \['cooking'\]"):
        distill(single_teacher, "tfidf", ddf, work_dir=tmp_path / "w3", model_out=tmp_path / "s3",
                labelled=true.assign(topic="cooking"), labelled_field="topic")
    assert not (tmp_path / "w3").exists()  # refused before the teacher ran


# ---------------------------------------------------------------------------- single-label end to end


def test_distill_single_label_soft_tfidf(single_teacher, pool, tmp_path):
    ddf = dd.from_pandas(pool, npartitions=4)
    with sync():
        result = distill(single_teacher, "tfidf", ddf, text_field="text", truth_field="topic",
                         work_dir=tmp_path / "work", model_out=tmp_path / "student", heldout_fraction=0.25)
    assert result.problem == "single_label" and result.targets == "soft"
    assert result.pool_rows == len(pool) and result.null_text_rows == 2
    assert result.train_rows + result.heldout_rows + result.null_text_rows == len(pool)
    assert 0.15 < result.heldout_rows / len(pool) < 0.35
    assert result.teacher_partitions_run == [0, 1, 2, 3] and result.teacher_partitions_reused == []
    assert result.student_metrics["agreement"] > 0.9  # an easy corpus: the student copies the teacher
    assert result.teacher_metrics["accuracy"] > 0.8
    assert result.student_docs_per_s > 0 and result.teacher_docs_per_s > 0
    report = json.loads((tmp_path / "student" / "distill_report.json").read_text())
    assert report["student_metrics"] == pytest.approx(result.student_metrics)
    # The saved student (the pickle-free tfidf-linear layout, no joblib file), loaded by the
    # operator as any user would, gives the held-out agreement reported.
    assert describe_model(str(tmp_path / "student")).layout == "tfidf-linear"
    assert not (tmp_path / "student" / "student.joblib").exists()
    rows = pd.concat([pd.read_parquet(p) for p in sorted((tmp_path / "work" / "outputs").glob("*.parquet"))])
    rows = rows[rows["text"].map(lambda t: isinstance(t, str) and bool(t.strip()))]
    held = rows[heldout_mask(rows["text"].tolist(), 0.25, seed=0)].reset_index(drop=True)
    operator = DistributedDataClassifier(model_identifier=str(tmp_path / "student"), label_field="student")
    with sync():
        labelled = operator(dd.from_pandas(held[["text"]], npartitions=2)).compute()
    agree = np.mean(labelled["student"].to_numpy(object) == held["teacher_label"].to_numpy(object))
    assert agree == pytest.approx(result.student_metrics["agreement"])
    assert (labelled["student"].to_numpy(object) == result.student.predict(held["text"].tolist())).all()


def test_distill_on_a_local_cluster_saves_a_student_the_operator_loads(single_teacher, pool, tmp_path):
    from nemo_cls_dask import get_client

    ddf = dd.from_pandas(pool, npartitions=4)
    client = get_client(n_workers=2, device="cpu", threads_per_worker=1)
    try:
        result = distill(QualityClassifier(model_identifier=_saved(single_teacher, tmp_path / "teacher")),
                         kimcnn("single_label"), ddf, work_dir=tmp_path / "work", model_out=tmp_path / "student",
                         truth_field="topic", heldout_fraction=0.25, speed_rows=50)
        assert result.targets == "hard"  # KimCNN takes no sample weights
        assert result.student_metrics["agreement"] > 0.85
        info = describe_model(str(tmp_path / "student"))
        assert info.problem_type == "single_label_classification"
        out = DistributedDataClassifier(model_identifier=tmp_path / "student", label_field="student")(ddf).compute()
        assert out.index.equals(pool.index) and out["student"].isna().sum() == 2
        assert set(out["student"].dropna()) <= {"fruit", "space"}
        # Every worker wrote partitions: the teacher ran on the cluster, not in this process.
        assert sorted(p.name for p in (tmp_path / "work" / "outputs").iterdir()) == [f"part-{k:05d}.parquet" for k in range(4)]
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()


def _saved(estimator, folder: Path) -> Path:
    estimator.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("frozen", [True, False], ids=["frozen-head", "fine-tuned"])
def test_transformer_students_take_soft_targets(single_teacher, pool, tmp_path, frozen):
    from nemo_cls_dask import TextClassifier

    backbone = make_backbone_checkpoint(tmp_path / "backbone")
    student = TextClassifier(str(backbone), frozen_backbone=frozen, epochs=2 if frozen else 1,
                             learning_rate=1e-2 if frozen else 1e-4, verbose=False, device="cpu", autocast=False)
    with sync():
        result = distill(single_teacher, student, dd.from_pandas(pool.head(120), npartitions=2),
                         work_dir=tmp_path / "work", model_out=tmp_path / "student", targets="soft", speed_rows=20)
    assert result.targets == "soft"
    assert describe_model(str(tmp_path / "student")).labels == ("fruit", "space")
    assert 0 <= result.student_metrics["agreement"] <= 1
    assert result.student.frozen_backbone is frozen
    with pytest.raises(InputError, match="cannot take soft targets"):
        distill(single_teacher, kimcnn("single_label"), pool, work_dir=tmp_path / "w2", model_out=tmp_path / "s2",
                targets="soft")
    assert not (tmp_path / "w2").exists()  # refused before anything was created


# ---------------------------------------------------------------------------- other problem types


def test_multi_label_teacher_gives_multi_label_student(pool, tmp_path):
    teacher = kimcnn("multi_label").fit(toy_frame(seed=3), label_field="tags")
    with sync():
        result = distill(teacher, "tfidf", dd.from_pandas(pool, npartitions=3), truth_field="tags",
                         work_dir=tmp_path / "work", model_out=tmp_path / "student", heldout_fraction=0.25)
    assert result.problem == "multi_label" and result.targets == "soft"  # per-label probabilities (one-vs-rest)
    assert result.student.problem == "multi_label"
    assert describe_model(str(tmp_path / "student")).layout == "tfidf-linear"
    assert result.student_metrics["agreement_micro_f1"] > 0.9
    assert 0 <= result.student_metrics["micro_f1"] <= 1 and "micro_f1" in result.teacher_metrics


def test_regression_teachers_give_regression_students(pool, tmp_path, regression_checkpoint):
    teacher = kimcnn("regression").fit(toy_frame(seed=4), label_field="fruit_share")
    with sync():
        result = distill(teacher, kimcnn("regression", epochs=15), dd.from_pandas(pool, npartitions=2),
                         truth_field="fruit_share", work_dir=tmp_path / "work", model_out=tmp_path / "student")
    assert result.problem == "regression" and result.targets == "values"
    assert describe_model(str(tmp_path / "student")).problem_type == "regression"
    assert result.student_metrics["agreement_r2"] > 0.5
    assert np.isfinite(result.teacher_metrics["mae"])
    # A FineWeb-Edu-style class (its own score columns) is read through the model's raw value.
    with sync():
        edu = distill(FineWebEduClassifier(model_identifier=regression_checkpoint), "kimcnn-char",
                      dd.from_pandas(pool.head(80), npartitions=2), work_dir=tmp_path / "w2",
                      model_out=tmp_path / "s2", speed_rows=10)
    assert edu.problem == "regression" and edu.student.problem == "regression"
    with pytest.raises(InputError, match="regression"):
        distill(teacher, "tfidf", pool, work_dir=tmp_path / "w3", model_out=tmp_path / "s3")


def test_sklearn_teacher_and_its_operator_are_one_teacher(pool, tmp_path):
    teacher = make_student("tfidf", "single_label").fit(toy_frame(seed=6), label_field="topic")
    ddf = dd.from_pandas(pool, npartitions=3)
    with sync():
        first = distill(teacher, kimcnn("single_label"), ddf, work_dir=tmp_path / "work", model_out=tmp_path / "a",
                        speed_rows=0)
        again = distill(teacher.as_operator(), "tfidf", ddf, work_dir=tmp_path / "work", model_out=tmp_path / "b",
                        speed_rows=0)
    assert first.teacher_partitions_run == [0, 1, 2] and again.teacher_partitions_reused == [0, 1, 2]
    assert again.teacher_partitions_run == [] and again.student_metrics["agreement"] > 0.9


# ---------------------------------------------------------------------------- resume


class FlakyTeacher(DistributedDataClassifier):
    """Raises on the partition holding ``poison`` the first time (a marker file remembers)."""

    calls: list[str] = []

    def __init__(self, *, marker: Path, poison: str, **options):
        self.marker, self.poison = marker, poison
        super().__init__(**options)

    def __call__(self, df):
        texts = [t if isinstance(t, str) else None for t in df[self.text_field]]
        FlakyTeacher.calls.append(texts[0])
        if self.poison in texts and not self.marker.exists():
            self.marker.write_text("failed once")
            raise RuntimeError("teacher interrupted")
        return super().__call__(df)


def test_resume_pays_the_teacher_only_for_missing_partitions(single_teacher, pool, tmp_path):
    folder = _saved(single_teacher, tmp_path / "teacher")
    ddf = dd.from_pandas(pool, npartitions=5)
    firsts = [part["text"].iloc[0] for part in (ddf.partitions[k].compute() for k in range(5))]
    poison = ddf.partitions[2].compute()["text"].iloc[3]
    teacher = FlakyTeacher(model_identifier=folder, marker=tmp_path / "marker", poison=poison)
    kwargs = dict(work_dir=tmp_path / "work", model_out=tmp_path / "student", speed_rows=0)
    FlakyTeacher.calls.clear()
    with sync(), pytest.raises(RuntimeError, match="interrupted"):
        distill(teacher, "tfidf", ddf, **kwargs)
    assert not (tmp_path / "student").exists()
    done = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (tmp_path / "work" / "outputs").glob("*.parquet")}
    assert "part-00002.parquet" not in done and not list((tmp_path / "work" / "outputs").glob("*.tmp-*"))
    FlakyTeacher.calls.clear()
    with sync():
        result = distill(teacher, "tfidf", ddf, **kwargs)
    missing = sorted(set(range(5)) - {int(name[5:10]) for name in done})
    assert result.teacher_partitions_run == missing and 2 in missing
    assert sorted(FlakyTeacher.calls) == sorted(firsts[k] for k in missing)  # nothing labelled twice
    for name, stamp in done.items():  # finished partitions were not rewritten
        path = tmp_path / "work" / "outputs" / name
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == stamp
    # Every row exactly once, in input order.
    rows = pd.concat([pd.read_parquet(p) for p in sorted((tmp_path / "work" / "outputs").glob("*.parquet"))])
    assert list(zip(rows["partition"], rows["position"])) == [
        (k, i) for k in range(5) for i in range(len(ddf.partitions[k].compute()))]
    def plain(texts):
        return [t if isinstance(t, str) else None for t in texts]

    assert plain(rows["text"]) == plain(pool["text"])
    assert result.pool_rows == len(pool)


def test_work_dir_of_another_run_or_input_is_refused(single_teacher, pool, tmp_path):
    ddf = dd.from_pandas(pool, npartitions=2)
    with sync():
        distill(single_teacher, "tfidf", ddf, work_dir=tmp_path / "work", model_out=tmp_path / "a", speed_rows=0)
    other = kimcnn("single_label", seed=9).fit(toy_frame(seed=1), label_field="topic")
    with pytest.raises(InputError, match="another run"):
        distill(other, "tfidf", ddf, work_dir=tmp_path / "work", model_out=tmp_path / "b")
    changed = pool.assign(text=pool["text"].where(pool.index != 0, "orbit planet changed"))
    with sync(), pytest.raises(InputError, match="input changed"):
        distill(single_teacher, "tfidf", dd.from_pandas(changed, npartitions=2), work_dir=tmp_path / "work",
                model_out=tmp_path / "c")
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
    # A resume of the same run reuses everything and trains the same student.
    with sync():
        again = distill(single_teacher, "tfidf", ddf, work_dir=tmp_path / "work", model_out=tmp_path / "d", speed_rows=0)
    assert again.teacher_partitions_run == [] and again.teacher_partitions_reused == [0, 1]


def test_bad_input_fails_before_anything_is_written(single_teacher, pool, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not ours")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "model.bin").write_text("not ours")
    cases = [
        (dict(work_dir=foreign), "no distillation wrote"),
        (dict(model_out=occupied), "not an empty folder"),
        (dict(text_field="body"), "Text column 'body'"),
        (dict(truth_field="nope"), "truth_field 'nope'"),
        (dict(heldout_fraction=0), "heldout_fraction"),
        (dict(targets="fuzzy"), "targets must be"),
        (dict(student="bert-large"), "Unknown student"),
        (dict(student=kimcnn("multi_label")), "single_label model and the student a multi_label"),
        (dict(teacher=object()), "Cannot use a object as a teacher"),
        (dict(teacher=kimcnn("single_label")), "not fitted"),
    ]
    for change, message in cases:
        kwargs = dict(teacher=single_teacher, student="tfidf", ddf=pool, work_dir=tmp_path / "w",
                      model_out=tmp_path / "s") | change
        with pytest.raises(InputError, match=message):
            distill(kwargs.pop("teacher"), kwargs.pop("student"), kwargs.pop("ddf"), **kwargs)
        assert not (tmp_path / "w").exists() and not (tmp_path / "s").exists()
    assert (foreign / "keep.txt").read_text() == "not ours" and (occupied / "model.bin").read_text() == "not ours"


# ---------------------------------------------------------------------------- command line


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "nemo_cls_dask", "distill", *args], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_distills_a_folder(single_teacher, pool, tmp_path):
    data = tmp_path / "pool"
    data.mkdir()
    pool.iloc[:200].to_parquet(data / "a.parquet")
    pool.iloc[200:].to_parquet(data / "b.parquet")
    teacher = _saved(single_teacher, tmp_path / "teacher")
    # True-labelled rows from a file: "zebra" is in no pool text, so only they teach it (label column = --truth-field).
    pd.DataFrame({"text": [f"zebra {w}" for w in SPACE * 5], "topic": "fruit"}).to_json(
        tmp_path / "true.jsonl", orient="records", lines=True)
    done = _cli(str(data), "student", "--teacher", str(teacher), "--student", "tfidf", "--truth-field", "topic",
                "--labelled", str(tmp_path / "true.jsonl"), "--n-workers", "1", "--speed-rows", "40", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "agreement" in done.stdout and "docs/s" in done.stdout and "+ 40 true-labelled" in done.stdout
    report = json.loads((tmp_path / "student" / "distill_report.json").read_text())
    assert report["pool_rows"] == len(pool) and report["teacher_partitions_run"] == [0, 1]
    assert report["labelled_rows"] == 40
    assert report["targets"] == "soft" and report["student_metrics"]["agreement"] > 0.85
    assert sorted(p.name for p in (tmp_path / "student.teacher-outputs" / "outputs").iterdir()) == [
        "part-00000.parquet", "part-00001.parquet"]
    assert describe_model(str(tmp_path / "student")).layout == "tfidf-linear"
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    classified = subprocess.run(
        [sys.executable, "-m", "nemo_cls_dask", "classify", str(data), str(tmp_path / "classified"), "--model",
         str(tmp_path / "student"), "--label-field", "student", "--n-workers", "1"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert classified.returncode == 0, classified.stderr
    out = pd.concat([pd.read_parquet(tmp_path / "classified" / name) for name in ("a.parquet", "b.parquet")])
    assert len(out) == len(pool) and set(out["student"].dropna()) <= {"fruit", "space"}
    assert out["student"].isna().sum() == 2  # the null and the blank text


def test_cli_bad_column_exits_2_before_a_cluster_starts(single_teacher, pool, tmp_path):
    pool.to_parquet(tmp_path / "pool.parquet")
    done = _cli(str(tmp_path / "pool.parquet"), "student", "--teacher", str(_saved(single_teacher, tmp_path / "t")),
                "--text-field", "body", cwd=tmp_path)
    assert done.returncode == 2 and "Column 'body'" in done.stderr
    assert not (tmp_path / "student").exists() and not (tmp_path / "student.teacher-outputs").exists()
    pd.DataFrame({"text": ["a b"], "section": ["fruit"]}).to_parquet(tmp_path / "true.parquet")
    done = _cli(str(tmp_path / "pool.parquet"), "student", "--teacher", str(_saved(single_teacher, tmp_path / "t2")),
                "--labelled", str(tmp_path / "true.parquet"), "--truth-field", "topic", cwd=tmp_path)
    assert done.returncode == 2 and "['topic'] are not in --labelled" in done.stderr  # default label column: --truth-field
    assert not (tmp_path / "student").exists() and not (tmp_path / "student.teacher-outputs").exists()
