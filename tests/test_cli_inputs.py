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
    assert client.status == "running"  # a given client stays open
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


def test_manifest_records_settings_and_refuses_a_mixed_resume(tmp_path, varied_texts, head_checkpoint, copy_checkpoint, client, capsys):
    import json

    from nemo_cls_dask.manifest import MANIFEST_NAME

    model = copy_checkpoint(head_checkpoint, "model")
    source = make_folder(tmp_path / "in", varied_texts, 3, files=2)
    output = tmp_path / "out"
    first = classify_files(source, output, DistributedDataClassifier(model_identifier=model), client=client)
    assert len(first.written) == 2
    record = json.loads((output / MANIFEST_NAME).read_text())
    (entry,) = record["classifiers"]
    assert entry["model"] == str(model) and entry["columns"] == ["preds"] and entry["settings"]["label_field"] == "preds"
    assert record["package_version"] and len(entry["model_fingerprint"]) == 16

    # Speed-only settings may change on a resume.
    again = classify_files(source, output, DistributedDataClassifier(model_identifier=model, batch_tokens=64), client=client)
    assert [o.status for o in again.files] == ["skipped", "skipped"]
    # Settings that change outputs may not.
    with pytest.raises(InputError, match=r"(?s)label_field: 'preds' -> 'topic'.*--overwrite"):
        classify_files(source, output, DistributedDataClassifier(model_identifier=model, label_field="topic"), client=client)
    # Nor may the model's files, even under the same path (re-saved).
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "note": "re-saved"}))
    with pytest.raises(InputError, match="model files"):
        classify_files(source, output, DistributedDataClassifier(model_identifier=model), client=client)
    # Through the CLI: a different model says so, exit code 2; --overwrite redoes the files.
    args = ["classify", str(source), str(output), "--model", str(head_checkpoint), "--scheduler", client.scheduler.address]
    assert main(args) == 2
    assert f"model: {model} -> {head_checkpoint}" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    assert "2 written" in capsys.readouterr().out
    assert json.loads((output / MANIFEST_NAME).read_text())["classifiers"][0]["model"] == str(head_checkpoint)
    # Outputs without a manifest were made with unknown settings.
    (output / MANIFEST_NAME).unlink()
    assert main(args) == 2
    assert "no record of the settings" in capsys.readouterr().err


def test_truth_field_accuracy_on_known_labels(tmp_path, varied_texts, head_checkpoint, client, capsys):
    source = tmp_path / "in.parquet"
    texts = varied_texts[:12]
    reference = DistributedDataClassifier(model_identifier=head_checkpoint)(pd.DataFrame({"text": texts}))["preds"].tolist()
    # 8 rows carry the model's own label (correct), 4 a label the model does not know.
    truth = reference[:8] + ["Unheard-of"] * 4
    pd.DataFrame({"text": texts, "gold": truth}).to_parquet(source)
    assert main(["classify", str(source), str(tmp_path / "out"), "--model", str(head_checkpoint),
                 "--truth-field", "gold", "--scheduler", client.scheduler.address]) == 0
    out = capsys.readouterr().out
    assert "accuracy on 12 rows with a 'gold' label: 0.667" in out
    assert "4 of them have a true label the model cannot predict; accuracy on the 8 rows with a label it knows: 1.000" in out


def test_progress_shows_rows_rate_and_eta_only_when_asked_or_on_a_terminal(tmp_path, varied_texts, head_checkpoint, client, capsys):
    source = make_folder(tmp_path / "in", varied_texts, 5, files=2)
    classifier = DistributedDataClassifier(model_identifier=head_checkpoint)
    classify_files(source, tmp_path / "quiet", classifier, client=client)  # stderr is not a terminal here
    assert "classify" not in capsys.readouterr().err
    result = classify_files(source, tmp_path / "shown", classifier, client=client, progress=True)
    err = capsys.readouterr().err
    assert "classify" in err and "10/10" in err and "doc/s" in err  # total from the parquet footers: an ETA
    assert result.timeline[0] == (0.0, 0, None) and result.timeline[-1][1] == 10
    assert 0 < result.timeline[-1][2] <= 1  # padding efficiency so far
