"""Inputs of ``classify_files`` and ``nemo-cls-dask classify``: checked before a cluster starts,
one bad file never sinks a run, csv/tsv read, hidden folders skipped (issue 14 items 6-8,
issue 15 items 4, 7, 8).
"""

from __future__ import annotations

import re

import dask
import pandas as pd
import pytest
from distributed import Client, LocalCluster

from nemo_cls_dask import DistributedDataClassifier, InputError, classify_files
from nemo_cls_dask.cli import main
from nemo_cls_dask.io import file_columns, input_files, read_frame

from test_cli import finished, make_folder


@pytest.fixture(scope="module")
def client():
    """One real process-based cluster for the tests of this module (starting one per test is slow)."""
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client


@pytest.fixture
def no_cluster(monkeypatch):
    """Make starting a cluster fail the test: the error must come before one starts."""

    def refuse(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr("nemo_cls_dask.cluster.get_client", refuse)


def _good(path, texts, rows=3):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"text": texts[:rows], "doc": [f"{path.stem}-{i}" for i in range(rows)]}).to_parquet(path)


def test_bad_files_are_named_and_the_rest_is_written(tmp_path, varied_texts, head_checkpoint, client, capsys):
    source = tmp_path / "in"
    for name in ("a/good-1.parquet", "b/good-2.parquet"):
        _good(source / name, varied_texts)
    (source / "a" / "empty.parquet").write_bytes(b"")
    (source / "b" / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet at all")
    pd.DataFrame({"body": ["no text column"]}).to_parquet(source / "b" / "other.parquet")
    (source / ".git").mkdir()
    (source / ".git" / "x.parquet").write_bytes(b"not parquet either")  # hidden folder: skipped
    (source / "_scratch").mkdir()
    (source / "_scratch" / "y.parquet").write_bytes(b"")
    output = tmp_path / "out"
    args = ["classify", str(source), str(output), "--model", str(head_checkpoint), "--scheduler", client.scheduler.address]
    assert main(args) == 2
    captured = capsys.readouterr()
    for name, why in (("empty.parquet", "is empty"), ("corrupt.parquet", "cannot be read as parquet"), ("other.parquet", "no column")):
        assert f"FAILED {source / ('a' if name == 'empty.parquet' else 'b') / name}" in captured.err and why in captured.err
    assert "2 written, 0 skipped (already complete), 3 failed" in captured.out
    assert [p.relative_to(output).as_posix() for p in finished(output)] == ["a/good-1.parquet", "b/good-2.parquet"]
    assert ".git" not in captured.out + captured.err and "_scratch" not in captured.out + captured.err

    # After the fix, the same command finishes the rest.
    for name in ("a/empty.parquet", "b/corrupt.parquet", "b/other.parquet"):
        _good(source / name, varied_texts)
    assert main(args) == 0
    assert "3 written, 2 skipped (already complete), 0 failed" in capsys.readouterr().out
    outputs = finished(output)
    assert len(outputs) == 5 and all(pd.read_parquet(p)["preds"].notna().all() for p in outputs)


def test_result_object_of_classify_files(tmp_path, varied_texts, head_checkpoint, client):
    source = make_folder(tmp_path / "in", varied_texts, 6, files=3)
    classifier = DistributedDataClassifier(model_identifier=head_checkpoint, autocast=False)
    result = classify_files(source, tmp_path / "out", classifier, client=client, truth_field="doc")
    assert result.ok and [o.status for o in result.files] == ["written"] * 3
    assert [o.source for o in result.files] == sorted(source.rglob("*.parquet"), key=lambda p: p.relative_to(source).as_posix())
    assert result.rows == 18 and all(o.rows == 6 for o in result.files)
    assert sum(result.label_counts.values()) == 18 and set(result.label_counts) <= {"High", "Medium", "Low"}
    assert result.docs_per_second > 0 and 0 < result.padding_efficiency <= 1
    assert result.timeline and result.timeline[-1][1] == 18
    assert [point[1] for point in result.timeline] == sorted(point[1] for point in result.timeline)
    # doc ids are never labels the model knows: every row has an unknown true label
    assert result.unknown_truth_rows == 18 and result.accuracy == 0.0 and result.accuracy_on_known_labels is None
    assert not client.cluster is None and client.status == "running"  # a given client stays open
    again = classify_files(source, tmp_path / "out", classifier, client=client, truth_field="doc")
    assert [o.status for o in again.files] == ["skipped"] * 3 and again.rows == 0


def test_all_inputs_bad_is_an_error_before_a_cluster(tmp_path, varied_texts, head_checkpoint, no_cluster, capsys):
    source = make_folder(tmp_path / "in", varied_texts, 2, files=2)
    output = tmp_path / "out"
    assert main(["classify", str(source), str(output), "--model", str(head_checkpoint), "--text-field", "body"]) == 2
    err = capsys.readouterr().err
    assert "No input file can be classified" in err and "no column(s) ['body']" in err and "part-0.parquet" in err
    assert not output.exists()  # no empty output folder left behind
    assert main(["classify", str(source), str(output), "--model", str(head_checkpoint), "--truth-field", "label"]) == 2
    assert "['label']" in capsys.readouterr().err and not output.exists()


@pytest.mark.parametrize("options", [{"n_workers": -1}, {"n_workers": 0}, {"threads_per_worker": 0}, {"memory_limit": "lots"},
                                     {"device": "tpu"}, {"scheduler_file": "/nonexistent/scheduler.json"}])
def test_bad_cluster_options_fail_before_anything_starts(options, tmp_path, varied_texts, head_checkpoint, no_cluster):
    source = make_folder(tmp_path / "in", varied_texts, 2, files=1)
    with pytest.raises(InputError):
        classify_files(source, tmp_path / "out", DistributedDataClassifier(model_identifier=head_checkpoint), cluster=options)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", [["--n-workers", "-1"], ["--n-workers", "0"], ["--max-chars", "0"], ["--batch-tokens", "-5"]])
def test_bad_numbers_are_refused_by_the_parser(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["classify", "in", "out", *flag])
    assert exit_info.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_csv_tsv_input_and_format_errors(tmp_path, varied_texts, head_checkpoint, client):
    source = tmp_path / "in"
    source.mkdir()
    frame = pd.DataFrame({"text": ['a "quoted", text', "123", varied_texts[0]], "label": ["x", "y", "z"]})
    frame.to_csv(source / "one.csv", index=False)
    frame.to_csv(source / "two.tsv.gz", index=False, sep="\t")
    assert file_columns(source / "one.csv") == ["text", "label"] == file_columns(source / "two.tsv.gz")
    with pytest.raises(InputError, match="mixes csv and tsv"):
        input_files(source)
    read = read_frame(source / "one.csv").compute()
    assert read["text"].tolist() == frame["text"].tolist()  # "123" stays text
    result = classify_files(source / "two.tsv.gz", tmp_path / "out", DistributedDataClassifier(model_identifier=head_checkpoint), client=client)
    assert [o.target.name for o in result.written] == ["two.parquet"]  # csv/tsv input is written as parquet
    assert pd.read_parquet(tmp_path / "out" / "two.parquet")["label"].tolist() == ["x", "y", "z"]
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match=r"\.parquet/\.pq, \.jsonl/\.json, \.csv and \.tsv"):
        input_files(tmp_path / "notes.txt")
    empty_folder = tmp_path / "nothing"
    empty_folder.mkdir()
    (empty_folder / "mine.txt").write_text("x")
    with pytest.raises(InputError, match="No data files found.*reads .parquet"):
        input_files(empty_folder)
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(InputError, match="is empty"):
        file_columns(tmp_path / "empty.jsonl")


def test_jsonl_list_columns_stay_json_lists(tmp_path, head_checkpoint, client):
    source = tmp_path / "in.jsonl"
    pd.DataFrame({"text": ["qt widgets", "a python library"], "tags": [["uitoolkit::qt", "role::devel-lib"], []]}).to_json(
        source, orient="records", lines=True)
    result = classify_files(source, tmp_path / "out", DistributedDataClassifier(model_identifier=head_checkpoint, score_field="p"),
                            client=client)
    assert result.ok
    lines = (tmp_path / "out" / "in.jsonl").read_text().splitlines()
    import json

    rows = [json.loads(line) for line in lines]
    assert [row["tags"] for row in rows] == [["uitoolkit::qt", "role::devel-lib"], []]  # not "['uitoolkit::qt', ...]"
    assert all(isinstance(row["p"], list) and len(row["p"]) == 3 for row in rows)


@pytest.mark.slow
def test_partition_that_kills_its_worker_is_named_with_the_memory_needed(tmp_path, varied_texts, head_checkpoint):
    """A worker whose memory limit is below what loading the model takes dies on every try."""
    source = make_folder(tmp_path / "in", varied_texts, 4, files=1)
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        result = classify_files(
            source, tmp_path / "out", DistributedDataClassifier(model_identifier=head_checkpoint),
            cluster={"n_workers": 1, "memory_limit": "300MiB"},
        )
    (failed,) = result.failed
    assert re.search(r"partition \d+ of \d+ of ", failed.error) and str(failed.source) in failed.error
    assert "killed its worker" in failed.error and "The model weights take" in failed.error
    assert "memory limit is 300.00 MiB" in failed.error
