#!/usr/bin/env python
"""Distil a MiniLM Debian-section classifier into fast students (issue 19).

Data: Debian bookworm package descriptions, the 20 largest sections, split by a hash of
the *source* package as in ``scripts/build_default_model.py``: the test side (unseen
source packages) gives ``--test-rows`` evaluation rows with true sections; the train side
holds the 5,000 labelled rows and the unlabelled pool (``--pool-rows`` rows of it).

Teacher: ``--teacher debian-topics`` (default: the packaged model, a frozen MiniLM with a
head trained on those same 5,000 labelled rows) or ``--teacher finetune`` (MiniLM
fine-tuned on the 5,000 rows here, cached in ``--out``; slow on a CPU).

Students: each distilled on the teacher's outputs over the pool (``nemo_cls_dask.distill``
on a 2-worker ``LocalCluster``), and the same student trained on the 5,000 labelled rows
alone. Reported on the test side: accuracy; against the teacher: agreement; speed: the
student's and the teacher's docs/s on the same cluster over the same held-out pool rows
(``DistillResult``). A curve of TF-IDF student accuracy against teacher-labelled rows is
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
from nemo_cls_dask.distill.students import make_student  # noqa: E402

STUDENTS = ("tfidf", "kimcnn-word", "kimcnn-char")


def load_data(args) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(labelled rows, pool rows, test rows) with columns ``text`` and ``section``."""
    frame = debian.deduplicate(debian.load_records(debian.PACKAGES_FILE, debian.TRANSLATION_FILE))
    sections = debian.top_sections(frame, debian.N_LABELS)
    data = frame[frame["section"].isin(sections)].reset_index(drop=True)
    split = debian.split_by_source(data, debian.N_TRAIN, args.test_rows, debian.SEED)
    is_test = debian.in_group(data["source"], debian.TEST_FRACTION, salt="test")
    train_side = data[~is_test]
    pool = debian.sample_rows(train_side, min(args.pool_rows, len(train_side)), debian.SEED + 7)
    print(f"{len(data)} descriptions in {len(sections)} sections; train side {len(train_side)}, test side "
          f"{int(is_test.sum())}; labelled {len(split.train)}, pool {len(pool)}, test {len(split.heldout)}", flush=True)
    return split.train[["text", "section"]], pool[["text", "section"]], split.heldout[["text", "section"]]


def build_teacher(args, labelled: pd.DataFrame) -> str:
    if args.teacher == "debian-topics":
        return "debian-topics"
    folder = Path(args.out) / "teacher-finetuned"
    if not (folder / "config.json").is_file():
        started = time.perf_counter()
        clf = TextClassifier(problem="single_label", max_len=128, epochs=args.epochs, learning_rate=1e-4,
                             head_learning_rate=1e-3, max_batch_rows=32, seed=0, verbose=False)
        clf.fit(labelled, text_field="text", label_field="section")
        clf.save_pretrained(folder)
        print(f"fine-tuned the teacher on {len(labelled)} rows in {time.perf_counter() - started:.0f}s", flush=True)
    return str(folder)


def accuracy_of(labels, truth: pd.Series) -> float:
    return float(np.mean(np.asarray(labels, dtype=object) == truth.to_numpy(dtype=object)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench-distill", help="work folder (teacher outputs, students, report)")
    parser.add_argument("--teacher", default="debian-topics", choices=["debian-topics", "finetune"])
    parser.add_argument("--epochs", type=int, default=1, help="--teacher finetune: epochs")
    parser.add_argument("--pool-rows", type=int, default=12000)
    parser.add_argument("--partition-rows", type=int, default=500)
    parser.add_argument("--test-rows", type=int, default=2000)
    parser.add_argument("--speed-rows", type=int, default=1000)
    parser.add_argument("--students", default=",".join(STUDENTS))
    parser.add_argument("--curve", default="500,1000,2000,5000,all", help="teacher-labelled rows for the TF-IDF curve")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    labelled, pool, test = load_data(args)
    teacher = build_teacher(args, labelled)
    client = get_client(n_workers=args.workers, device="cpu", threads_per_worker=1)
    rows: list[dict] = []
    try:
        pool_ddf = dd.from_pandas(pool, npartitions=max(1, len(pool) // args.partition_rows), sort=False)
        test_ddf = dd.from_pandas(test, npartitions=args.workers * 4, sort=False)
        teacher_test = DistributedDataClassifier(model_identifier=teacher, label_field="teacher")(test_ddf).compute()
        teacher_accuracy = accuracy_of(teacher_test["teacher"], test["section"])
        print(f"teacher {teacher}: test accuracy {teacher_accuracy:.4f}", flush=True)
        work = out / f"teacher-outputs-{args.teacher}-{len(pool)}"
        for name in args.students.split(","):
            result = distill(teacher, name, pool_ddf, text_field="text", truth_field="section", work_dir=work,
                             model_out=_fresh(out / "students" / f"{name}-distilled"), speed_rows=args.speed_rows)
            print(result.summary(), flush=True)
            distilled = result.student.predict(test["text"].tolist())
            alone = make_student(name, "single_label").fit(labelled, text_field="text", label_field="section")
            rows.append({
                "student": name, "targets": result.targets, "train_rows": result.train_rows,
                "accuracy": accuracy_of(distilled, test["section"]),
                "agreement": float(np.mean(np.asarray(distilled, object) == teacher_test["teacher"].to_numpy(object))),
                "labelled_only_accuracy": accuracy_of(alone.predict(test["text"].tolist()), test["section"]),
                "student_docs_per_s": result.student_docs_per_s, "teacher_docs_per_s": result.teacher_docs_per_s,
                "speedup": result.speedup, "teacher_seconds": result.teacher_seconds,
                "teacher_partitions_run": len(result.teacher_partitions_run),
            })
            print(json.dumps(rows[-1]), flush=True)
        curve = []
        for size in args.curve.split(","):
            limit = None if size == "all" else int(size)
            result = distill(teacher, "tfidf", pool_ddf, text_field="text", work_dir=work, speed_rows=0,
                             model_out=_fresh(out / "students" / f"tfidf-curve-{size}"), max_train_rows=limit)
            accuracy = accuracy_of(result.student.predict(test["text"].tolist()), test["section"])
            alone_acc = None
            if limit is not None and limit <= len(labelled):
                alone = make_student("tfidf", "single_label").fit(labelled.iloc[:limit], text_field="text", label_field="section")
                alone_acc = accuracy_of(alone.predict(test["text"].tolist()), test["section"])
            curve.append({"teacher_labelled_rows": result.train_rows, "distilled_accuracy": accuracy,
                          "labelled_only_accuracy": alone_acc})
            print(json.dumps(curve[-1]), flush=True)
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    report = {"teacher": teacher, "teacher_accuracy": teacher_accuracy, "pool_rows": len(pool), "test_rows": len(test),
              "labelled_rows": len(labelled), "students": rows, "curve": curve,
              "seconds": time.perf_counter() - started}
    (out / "bench_distill.json").write_text(json.dumps(report, indent=2))
    print(markdown(report))
    plot(curve, teacher_accuracy, out / "distill_curve.png")
    print(f"wrote {out / 'bench_distill.json'} and {out / 'distill_curve.png'} in {report['seconds']:.0f}s")


def _fresh(folder: Path) -> Path:
    """A student folder name not used yet (a rerun never overwrites an earlier student)."""
    candidate, n = folder, 1
    while candidate.exists():
        n += 1
        candidate = folder.with_name(f"{folder.name}-{n}")
    return candidate


def markdown(report: dict) -> str:
    teacher_accuracy = report["teacher_accuracy"]
    lines = [f"teacher `{report['teacher']}`: test accuracy {teacher_accuracy:.3f}", "",
             "| student | targets | distilled accuracy | vs teacher | agreement | labelled-only accuracy | "
             "student docs/s | teacher docs/s | speed-up |", "|---|---|---|---|---|---|---|---|---|"]
    for row in report["students"]:
        lines.append(f"| {row['student']} | {row['targets']} | {row['accuracy']:.3f} | "
                     f"{row['accuracy'] / teacher_accuracy:.1%} | {row['agreement']:.3f} | "
                     f"{row['labelled_only_accuracy']:.3f} | {row['student_docs_per_s']:.0f} | "
                     f"{row['teacher_docs_per_s']:.0f} | {row['speedup']:.1f}x |")
    lines += ["", "| teacher-labelled rows | TF-IDF distilled accuracy | TF-IDF on as many true labels |", "|---|---|---|"]
    for point in report["curve"]:
        alone = point["labelled_only_accuracy"]
        lines.append(f"| {point['teacher_labelled_rows']} | {point['distilled_accuracy']:.3f} | "
                     f"{'' if alone is None else f'{alone:.3f}'} |")
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
    alone = [(p["teacher_labelled_rows"], p["labelled_only_accuracy"]) for p in curve if p["labelled_only_accuracy"] is not None]
    if alone:
        axes.plot(*zip(*alone), "s--", label="TF-IDF on true labels")
    axes.axhline(teacher_accuracy, color="grey", linestyle=":", label="teacher")
    axes.set_xscale("log")
    axes.set_xlabel("training rows")
    axes.set_ylabel("test accuracy (unseen source packages)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
