#!/usr/bin/env python
"""Distil a MiniLM Debian-section classifier into fast students (issue 19).

Data: Debian bookworm package descriptions, the 20 largest sections, split by a hash of
the *source* package as in ``scripts/build_default_model.py``: the test side (unseen
source packages) gives ``--test-rows`` evaluation rows with true sections; the train side
holds the 5,000 labelled rows and the unlabelled pool (``--pool-rows`` rows of it).

Teacher: ``--teacher debian-topics`` (default: the packaged model, a frozen MiniLM with a
head trained on those same 5,000 labelled rows) or ``--teacher finetune`` (MiniLM
fine-tuned on the 5,000 rows here, cached in ``--out``; slow on a CPU).

Students: each distilled on the teacher's outputs over the pool (``nemo_cls_dask.distillation``
on a 2-worker ``LocalCluster``), and the same student trained on the 5,000 labelled rows
alone. Reported on the test side: accuracy; against the teacher: agreement; speed: each
model's docs/s as an operator over the same ``--speed-rows`` test rows on the same
cluster, models loaded first (``nemo_cls_dask.distillation.docs_per_second``). A curve of TF-IDF student accuracy against teacher-labelled rows is
written as a table and a PNG.

The teacher's pass is resumable: if the command is stopped, run it again with the same
``--out`` and only the missing partitions are labelled.

    HF_HUB_OFFLINE=1 python benchmarks/bench_distill.py --out /tmp/bench-distill
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import dask.dataframe as dd  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import build_default_model as debian  # noqa: E402
from nemo_cls_dask import DistributedDataClassifier, TextClassifier, distill, get_client  # noqa: E402
from nemo_cls_dask.distillation import docs_per_second  # noqa: E402
from nemo_cls_dask.distillation.students import make_student, saved_operator  # noqa: E402

STUDENTS = ("tfidf", "kimcnn-word", "kimcnn-char")


def load_data(args) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(labelled rows, pool rows, test rows) with columns ``text`` and ``section``; cached in ``--out``
    (reading the apt lists takes minutes on a busy machine)."""
    cache = Path(args.out) / f"data-{args.pool_rows}-{args.test_rows}.parquet"
    if cache.is_file():
        data = pd.read_parquet(cache)
        parts = tuple(data[data["part"] == name].drop(columns="part").reset_index(drop=True)
                      for name in ("labelled", "pool", "test"))
        print(f"read {cache}: labelled {len(parts[0])}, pool {len(parts[1])}, test {len(parts[2])}", flush=True)
        return parts
    labelled, pool, test = read_debian(args)
    pd.concat([labelled.assign(part="labelled"), pool.assign(part="pool"), test.assign(part="test")],
              ignore_index=True).to_parquet(cache)
    return labelled, pool, test


def read_debian(args) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    frame = debian.deduplicate(debian.load_records(debian.PACKAGES_FILE, debian.TRANSLATION_FILE))
    sections = debian.top_sections(frame, debian.N_LABELS)
    data = frame[frame["section"].isin(sections)].reset_index(drop=True)
    split = debian.split_by_source(data, debian.N_TRAIN, args.test_rows, debian.SEED)
    is_test = debian.in_group(data["source"], debian.TEST_FRACTION, salt="test")
    train_side = data[~is_test]
    pool = debian.sample_rows(train_side, min(args.pool_rows, len(train_side)), debian.SEED + 7)
    print(f"{len(data)} descriptions in {len(sections)} sections; train side {len(train_side)}, test side "
          f"{int(is_test.sum())}; labelled {len(split.train)}, pool {len(pool)}, test {len(split.heldout)}", flush=True)
    columns = ["text", "section"]
    return (split.train[columns].reset_index(drop=True), pool[columns].reset_index(drop=True),
            split.heldout[columns].reset_index(drop=True))


def build_teacher(args, labelled: pd.DataFrame) -> str:
    """The teacher's folder: the packaged model, or MiniLM fine-tuned here with ``TextClassifier`` defaults
    (only ``problem`` and ``seed`` given; the defaults resolve epochs and learning rates from the data size)."""
    if args.teacher == "debian-topics":
        return "debian-topics"
    folder = Path(args.teacher_dir) if args.teacher_dir else Path(args.out) / "teacher-finetuned"
    if not (folder / "config.json").is_file():
        started = time.perf_counter()
        clf = TextClassifier(problem="single_label", seed=0)
        clf.fit(labelled, text_field="text", label_field="section")
        clf.save_pretrained(folder)
        print(f"fine-tuned the teacher on {len(labelled)} rows in {time.perf_counter() - started:.0f}s", flush=True)
    return str(folder)


def accuracy_of(labels, truth: pd.Series) -> float:
    return float(np.mean(np.asarray(labels, dtype=object) == truth.to_numpy(dtype=object)))


def teacher_outputs(teacher: str, test: pd.DataFrame, workers: int, cache: Path) -> pd.Series:
    """The teacher's labels of the test rows (cached: the teacher is the slow part)."""
    if cache.is_file():
        return pd.read_parquet(cache)["teacher"]
    test_ddf = dd.from_pandas(test[["text"]], npartitions=workers * 4, sort=False)
    labels = DistributedDataClassifier(model_identifier=teacher, label_field="teacher")(test_ddf).compute()["teacher"]
    pd.DataFrame({"teacher": labels}).to_parquet(cache)
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench-distill", help="work folder (teacher outputs, students, report)")
    parser.add_argument("--teacher", default="debian-topics", choices=["debian-topics", "finetune"])
    parser.add_argument("--teacher-dir", default=None,
                        help="--teacher finetune: where the fine-tuned teacher is saved (default OUT/teacher-finetuned)")
    parser.add_argument("--pool-rows", type=int, default=3000)
    parser.add_argument("--pool-use", type=int, default=None,
                        help="use only the first N rows of the --pool-rows pool (a smaller teacher pass, same cached data)")
    parser.add_argument("--partition-rows", type=int, default=200)
    parser.add_argument("--test-rows", type=int, default=1000)
    parser.add_argument("--speed-rows", type=int, default=200, help="test rows every model is timed on")
    parser.add_argument("--students", default=",".join(STUDENTS))
    parser.add_argument("--curve", default="250,1000,2000,all", help="teacher-labelled rows for the TF-IDF curve")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--teacher-only", action="store_true",
                        help="only run (or resume) the teacher's pass over the pool and the test rows, then stop")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def elapsed() -> str:
        return f"({time.perf_counter() - started:.0f}s)"

    labelled, pool, test = load_data(args)
    if args.pool_use:
        pool = pool.iloc[: args.pool_use].reset_index(drop=True)
        print(f"using the first {len(pool)} pool rows", flush=True)
    teacher = build_teacher(args, labelled)
    client = get_client(n_workers=args.workers, device="cpu", threads_per_worker=1)
    rows: list[dict] = []
    try:
        pool_ddf = dd.from_pandas(pool, npartitions=max(1, len(pool) // args.partition_rows), sort=False)
        work = out / f"teacher-outputs-{args.teacher}-{len(pool)}"
        teacher_test = teacher_outputs(teacher, test, args.workers, out / f"teacher-test-{args.teacher}-{len(test)}.parquet")
        teacher_accuracy = accuracy_of(teacher_test, test["section"])
        print(f"teacher {teacher}: test accuracy {teacher_accuracy:.4f} {elapsed()}", flush=True)
        if args.teacher_only:
            result = distill(teacher, "tfidf", pool_ddf, text_field="text", truth_field="section", work_dir=work,
                             speed_rows=0, model_out=_fresh(out / "students" / "teacher-pass"))
            print(f"teacher pass complete: {len(result.teacher_partitions_run)} partitions labelled now in "
                  f"{result.teacher_seconds:.0f}s, {len(result.teacher_partitions_reused)} reused {elapsed()}")
            return
        timed = test[["text"]].iloc[: args.speed_rows]
        parts = args.workers * 2
        # Finished stages are kept in --out, so a rerun after a timeout continues where it stopped.
        stages_file = out / f"stages-{args.teacher}-{len(pool)}.json"
        stages = json.loads(stages_file.read_text()) if stages_file.is_file() else {}

        def save_stage(key: str, value) -> None:
            stages[key] = value
            stages_file.write_text(json.dumps(stages, indent=2))

        if "teacher_docs_per_s" not in stages:
            speed = docs_per_second(DistributedDataClassifier(model_identifier=teacher, label_field="t"), timed, parts)
            save_stage("teacher_docs_per_s", speed)
        teacher_speed = stages["teacher_docs_per_s"]
        print(f"teacher: {teacher_speed:.1f} docs/s on {len(timed)} test rows {elapsed()}", flush=True)

        def measured(labels) -> dict:
            labels = np.asarray(labels, dtype=object)
            return {"accuracy": accuracy_of(labels, test["section"]),
                    "agreement": float(np.mean(labels == teacher_test.to_numpy(object)))}

        for name in args.students.split(","):
            key = f"student:{name}"
            if key in stages:
                rows.append(stages[key])
                continue
            result = distill(teacher, name, pool_ddf, text_field="text", truth_field="section", work_dir=work,
                             model_out=_fresh(out / "students" / f"{name}-distilled"), speed_rows=0)
            print(result.summary(), elapsed(), flush=True)
            speed = docs_per_second(saved_operator(Path(result.path), "text", "single_label"), timed, parts)
            both = distill(teacher, name, pool_ddf, text_field="text", truth_field="section", work_dir=work,
                           model_out=_fresh(out / "students" / f"{name}-distilled-plus-true"), speed_rows=0,
                           labelled=labelled, labelled_field="section")
            alone = make_student(name, "single_label").fit(labelled, text_field="text", label_field="section")
            texts = test["text"].tolist()
            row = {"student": name, "targets": result.targets, "teacher_rows": result.train_rows,
                   "true_rows": len(labelled), "distilled": measured(result.student.predict(texts)),
                   "distilled_plus_true": measured(both.student.predict(texts)),
                   "labelled_only": measured(alone.predict(texts)),
                   "student_docs_per_s": speed, "teacher_docs_per_s": teacher_speed, "speedup": speed / teacher_speed,
                   "fit_seconds": result.fit_seconds}
            rows.append(row)
            print(json.dumps(row), elapsed(), flush=True)
            save_stage(key, row)
        curve = []
        for size in args.curve.split(","):
            key = f"curve:{size}"
            if key in stages:
                curve.append(stages[key])
                continue
            limit = None if size == "all" else int(size)
            runs = {}
            for variant, extra in (("distilled", {}), ("distilled_plus_true", {"labelled": labelled, "labelled_field": "section"})):
                result = distill(teacher, "tfidf", pool_ddf, text_field="text", truth_field="section", work_dir=work,
                                 speed_rows=0, model_out=_fresh(out / "students" / f"tfidf-curve-{size}-{variant}"),
                                 max_train_rows=limit, **extra)
                runs[variant] = accuracy_of(result.student.predict(test["text"].tolist()), test["section"])
            rows_used = result.train_rows
            alone = make_student("tfidf", "single_label").fit(labelled.iloc[:rows_used], text_field="text",
                                                              label_field="section")
            curve.append({"teacher_labelled_rows": rows_used, "true_labelled_rows": min(rows_used, len(labelled)),
                          "distilled_accuracy": runs["distilled"], "distilled_plus_true_accuracy": runs["distilled_plus_true"],
                          "labelled_only_accuracy": accuracy_of(alone.predict(test["text"].tolist()), test["section"])})
            print(json.dumps(curve[-1]), elapsed(), flush=True)
            save_stage(key, curve[-1])
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    report = {"teacher": teacher, "teacher_accuracy": teacher_accuracy, "pool_rows": len(pool), "test_rows": len(test),
              "labelled_rows": len(labelled), "speed_rows": len(timed), "students": rows, "curve": curve,
              "seconds": time.perf_counter() - started}
    (out / "bench_distill.json").write_text(json.dumps(report, indent=2))
    print(markdown(report))
    plot(curve, teacher_accuracy, out / "distill_curve.png")
    print(f"wrote {out / 'bench_distill.json'} and {out / 'distill_curve.png'} {elapsed()}")


def _fresh(folder: Path) -> Path:
    """A student folder name not used yet (a rerun never overwrites an earlier student)."""
    candidate, n = folder, 1
    while candidate.exists():
        n += 1
        candidate = folder.with_name(f"{folder.name}-{n}")
    return candidate


def markdown(report: dict) -> str:
    teacher_accuracy = report["teacher_accuracy"]
    lines = [f"teacher `{report['teacher']}`: test accuracy {teacher_accuracy:.3f}, "
             f"{report['students'][0]['teacher_docs_per_s'] if report['students'] else float('nan'):.1f} docs/s", "",
             "| student | distilled: accuracy (vs teacher) / agreement | distilled + 5,000 true labels | "
             "5,000 true labels only | student docs/s | speed-up |", "|---|---|---|---|---|---|"]
    for row in report["students"]:
        cells = [f"{row[v]['accuracy']:.3f} ({row[v]['accuracy'] / teacher_accuracy:.1%}) / {row[v]['agreement']:.3f}"
                 for v in ("distilled", "distilled_plus_true", "labelled_only")]
        lines.append(f"| {row['student']} ({row['targets']}, {row['teacher_rows']} teacher rows) | " + " | ".join(cells)
                     + f" | {row['student_docs_per_s']:.0f} | {row['speedup']:.1f}x |")
    lines += ["", "| teacher-labelled rows | TF-IDF distilled | TF-IDF distilled + 5,000 true | TF-IDF on as many true "
                  "labels (rows) |", "|---|---|---|---|"]
    for point in report["curve"]:
        lines.append(f"| {point['teacher_labelled_rows']} | {point['distilled_accuracy']:.3f} | "
                     f"{point['distilled_plus_true_accuracy']:.3f} | "
                     f"{point['labelled_only_accuracy']:.3f} ({point['true_labelled_rows']}) |")
    return "\n".join(lines)


def plot(curve: list[dict], teacher_accuracy: float, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    figure, axes = plt.subplots(figsize=(6, 4))
    x = [p["teacher_labelled_rows"] for p in curve]
    axes.plot(x, [p["distilled_accuracy"] for p in curve], "o-", label="TF-IDF distilled (teacher labels)")
    axes.plot(x, [p["distilled_plus_true_accuracy"] for p in curve], "^-", label="TF-IDF distilled + 5,000 true labels")
    axes.plot(x, [p["labelled_only_accuracy"] for p in curve], "s--", label="TF-IDF on as many true labels")
    axes.axhline(teacher_accuracy, color="grey", linestyle=":", label="teacher")
    axes.set_xscale("log")
    axes.set_xlabel("training rows")
    axes.set_ylabel("test accuracy (unseen source packages)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
