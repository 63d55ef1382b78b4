"""One large input file is written as ordered parts, one writer task per part, resumed per part.

The cluster is a real ``distributed`` LocalCluster with two worker processes. A probe
installed in each worker process (before any task ran there) records how many rows every
writer task received, so the tests can show that no writer holds more than one part: the
old writer received the whole file.

Tolerance: a resumed or unsplit run classifies rows in other batches, so fp32 scores differ
by up to ``FP32_ATOL`` (summation order) and labels are compared with
:func:`tolerances.assert_labels_agree` (equal except on near-ties).
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

from nemo_cls_dask import DistributedDataClassifier, classify_files
from nemo_cls_dask.errors import InputError
from nemo_cls_dask.output_parts import PLAN_NAME, output_files, read_part, split_large_files
from nemo_cls_dask.io import plan_files
from tolerances import assert_labels_agree, score_rows

ROWS = 130
PART_ROWS = 30  # 5 parts: 30, 30, 30, 30, 10


def _install_writer_probe() -> None:
    """In a worker process: make the writer task record the rows it receives."""
    import nemo_cls_dask.io as io_module

    original = getattr(io_module, "_unprobed_write_file_result", io_module.write_file_result)
    io_module._unprobed_write_file_result = original
    io_module._writer_rows = []

    def probed(parts, *args, **kwargs):
        io_module._writer_rows.append(sum(len(part) for part in parts))
        return original(parts, *args, **kwargs)

    io_module.write_file_result = probed


def _take_writer_rows() -> list[int]:
    import nemo_cls_dask.io as io_module

    rows, io_module._writer_rows = list(io_module._writer_rows), []
    return rows


@pytest.fixture(scope="module")
def client():
    """Two worker processes; the writer probe goes in before any task is deserialized there."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
        client.run(_install_writer_probe)
        yield client


def writer_rows(client) -> list[int]:
    return sorted(rows for per_worker in client.run(_take_writer_rows).values() for rows in per_worker)


@pytest.fixture
def big_input(tmp_path, varied_texts):
    """A parquet file of ROWS rows with a row id and a true label from the model's labels."""
    texts = [varied_texts[i % len(varied_texts)] + f" row {i}" for i in range(ROWS)]
    truth = [("High", "Medium", "Low")[i % 3] for i in range(ROWS)]
    path = tmp_path / "in" / "big.parquet"
    path.parent.mkdir()
    pd.DataFrame({"text": texts, "n": np.arange(ROWS), "truth": truth}).to_parquet(path)
    return path


def classifier(checkpoint):
    return DistributedDataClassifier(model_identifier=checkpoint, score_field="p", autocast=False)


def test_large_file_is_written_as_ordered_parts_by_writers_holding_one_part(big_input, tmp_path, head_checkpoint, client):
    writer_rows(client)  # drop anything an earlier test left
    result = classify_files(big_input, tmp_path / "out", classifier(head_checkpoint), client=client,
                            truth_field="truth", part_rows=PART_ROWS)
    assert writer_rows(client) == [10, 30, 30, 30, 30]  # old code: one writer received all 130 rows
    target = tmp_path / "out" / "big.parquet"
    assert result.ok and [(o.status, o.target, o.rows, o.parts) for o in result.files] == [("written", target, ROWS, 5)]
    assert target.is_dir() and [p.name for p in output_files(target)] == [f"part.0000{k}.parquet" for k in range(5)]
    assert (target / PLAN_NAME).is_file() and not (tmp_path / "out" / ".big.parquet.parts").exists()
    assert [len(pd.read_parquet(p)) for p in output_files(target)] == [30, 30, 30, 30, 10]
    back = pd.read_parquet(target)  # the folder reads as one dataset: every row once, in order
    assert back["n"].tolist() == list(range(ROWS)) and back.index.tolist() == list(range(ROWS))
    assert result.rows == ROWS and sum(result.label_counts.values()) == ROWS
    assert result.correct == int((back["preds"] == back["truth"]).sum())
    assert result.truth_counts == {"High": 44, "Medium": 43, "Low": 43}

    whole = classify_files(big_input, tmp_path / "whole", classifier(head_checkpoint), client=client, part_rows=ROWS)
    assert writer_rows(client) == [ROWS] and whole.files[0].parts is None
    single = pd.read_parquet(tmp_path / "whole" / "big.parquet")
    assert single["n"].tolist() == back["n"].tolist()
    np.testing.assert_allclose(np.array(score_rows(back["p"])), np.array(score_rows(single["p"])), atol=1e-5)
    assert_labels_agree(back["preds"].tolist(), single["preds"].tolist(), score_rows(single["p"]))


def test_resume_redoes_only_the_missing_parts(big_input, tmp_path, head_checkpoint, client):
    output = tmp_path / "out"
    classify_files(big_input, output, classifier(head_checkpoint), client=client, part_rows=PART_ROWS)
    first = pd.read_parquet(output / "big.parquet")
    # What a run killed after three parts leaves: the work folder, some parts, a half-written temporary.
    work = output / ".big.parquet.parts"
    os.rename(output / "big.parquet", work)
    (work / "part.00001.parquet").unlink()
    (work / "part.00004.parquet").unlink()
    stray = work / ".part.00001.parquet.0123456789ab.tmp"
    stray.write_bytes(b"half a part")
    kept = {name: (work / name).stat().st_mtime_ns for name in ("part.00000.parquet", "part.00002.parquet", "part.00003.parquet")}
    writer_rows(client)

    again = classify_files(big_input, output, classifier(head_checkpoint), client=client, part_rows=PART_ROWS)
    assert writer_rows(client) == [10, 30]  # only parts 2 and 5 were classified and written
    assert again.removed_temporaries == [stray] and not stray.exists()
    assert [(o.status, o.rows, o.parts) for o in again.files] == [("written", 40, 2)] and again.rows == 40
    assert {name: (output / "big.parquet" / name).stat().st_mtime_ns for name in kept} == kept
    back = pd.read_parquet(output / "big.parquet")
    assert back["n"].tolist() == list(range(ROWS))
    np.testing.assert_allclose(np.array(score_rows(back["p"])), np.array(score_rows(first["p"])), atol=1e-5)

    done = classify_files(big_input, output, classifier(head_checkpoint), client=client, part_rows=PART_ROWS)
    assert [o.status for o in done.files] == ["skipped"] and writer_rows(client) == []


def test_overwrite_replaces_a_single_file_by_parts_and_a_changed_plan_redoes_the_parts(big_input, tmp_path, head_checkpoint, client):
    output = tmp_path / "out"
    classify_files(big_input, output, classifier(head_checkpoint), client=client, part_rows=ROWS)
    assert (output / "big.parquet").is_file()
    result = classify_files(big_input, output, classifier(head_checkpoint), client=client, part_rows=PART_ROWS, overwrite=True)
    assert result.files[0].parts == 5 and (output / "big.parquet").is_dir()
    assert sorted(p.name for p in output.iterdir()) == ["_nemo_cls_dask.json", "big.parquet"]  # no old file left aside
    # A work folder cut with another part size is stale: its parts are removed (only those names), then redone.
    work = output / ".big.parquet.parts"
    os.rename(output / "big.parquet", work)
    (work / "part.00004.parquet").unlink()
    (work / "notes.txt").write_text("not ours")
    writer_rows(client)
    redone = classify_files(big_input, output, classifier(head_checkpoint), client=client, part_rows=50, overwrite=True)
    assert writer_rows(client) == [30, 50, 50] and redone.files[0].parts == 3
    assert any("removed 4 part(s)" in note for note in redone.notes)
    assert [len(pd.read_parquet(p)) for p in output_files(output / "big.parquet")] == [50, 50, 30]
    assert (output / "big.parquet" / "notes.txt").read_text() == "not ours"


def test_parts_of_an_unfinished_run_count_for_the_settings_check(big_input, tmp_path, head_checkpoint, hf_checkpoint, client):
    output = tmp_path / "out"
    classify_files(big_input, output, classifier(head_checkpoint), client=client, part_rows=PART_ROWS)
    os.rename(output / "big.parquet", output / ".big.parquet.parts")
    (output / ".big.parquet.parts" / "part.00000.parquet").unlink()
    with pytest.raises(InputError, match="other settings"):
        classify_files(big_input, output, classifier(hf_checkpoint), client=client, part_rows=PART_ROWS)


def test_cli_part_rows_and_the_report_read_every_part(big_input, tmp_path, head_checkpoint, client, capsys):
    from nemo_cls_dask.cli import main

    output, report = tmp_path / "out", tmp_path / "run.html"
    argv = ["classify", str(big_input), str(output), "--model", str(head_checkpoint), "--truth-field", "truth",
            "--scheduler", client.scheduler.address, "--part-rows", str(PART_ROWS), "--report", str(report)]
    assert main(argv) == 0
    assert f"wrote {output / 'big.parquet'} ({ROWS} rows in 5 part(s))" in capsys.readouterr().out
    back = pd.read_parquet(output / "big.parquet")
    page = report.read_text(encoding="utf-8")

    def table_value(name):
        match = re.search(rf"<td>{re.escape(name)}</td><td[^>]*>([^<]*)</td>", page)
        assert match, f"no table row {name!r}"
        return match.group(1)

    assert table_value("rows") == str(ROWS)  # every part read back
    assert table_value("accuracy, all rows with a true label") == f"{(back['preds'] == back['truth']).mean():.3f}"


def test_a_failed_part_fails_its_file_and_keeps_the_other_parts_for_the_next_run(tmp_path, varied_texts, head_checkpoint, client):
    rows = [{"text": varied_texts[i % len(varied_texts)], "n": i} for i in range(100)]
    lines = [json.dumps(row) for row in rows]
    lines[65] = '{"text": "cut off'  # part 3 of 4 (rows 50-74): a line that is not JSON
    path = tmp_path / "in" / "big.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    output = tmp_path / "out"
    result = classify_files(path, output, classifier(head_checkpoint), client=client, part_rows=25)
    assert [o.status for o in result.files] == ["failed"] and "part 3 of 4 (rows 50-74)" in result.files[0].error
    assert not (output / "big.jsonl").exists()  # an incomplete output never gets the name
    work = output / ".big.jsonl.parts"
    assert sorted(p.name for p in output_files(work)) == ["part.00000.jsonl", "part.00001.jsonl", "part.00003.jsonl"]

    lines[65] = json.dumps(rows[65])
    path.write_text("\n".join(lines) + "\n")  # fixed
    writer_rows(client)
    again = classify_files(path, output, classifier(head_checkpoint), client=client, part_rows=25)
    assert again.ok and writer_rows(client) == [25, 25, 25, 25]  # the input changed: its old parts are redone
    back = pd.read_json(output / "big.jsonl" / "part.00002.jsonl", lines=True)
    assert back["n"].tolist() == list(range(50, 75))


# ---------------------------------------------------------------------------- reading parts (no cluster)


def _all_parts(path, part_rows, tmp_path):
    jobs = split_large_files(plan_files(path, tmp_path / "o"), part_rows)
    return pd.concat([read_part(part) for part in jobs[0].parts])


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.jsonl.gz", "rows.csv", "rows.tsv.gz"])
def test_text_parts_hold_every_row_once_in_order(tmp_path, varied_texts, name):
    frame = pd.DataFrame({"text": [t.replace("\n", " ") + f" #{i}" for i, t in enumerate(varied_texts * 3)],
                          "n": [str(i) for i in range(len(varied_texts) * 3)]})
    path = tmp_path / name
    if ".jsonl" in name:
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, sep="," if ".csv" in name else "\t", index=False)
    parts = _all_parts(path, 7, tmp_path)
    assert parts["n"].astype(str).tolist() == frame["n"].tolist()
    assert parts["text"].tolist() == frame["text"].tolist()
    assert parts.index.tolist() == list(range(len(frame)))


def test_a_csv_line_break_inside_a_quoted_field_is_refused_not_shifted(tmp_path):
    path = tmp_path / "rows.csv"
    pd.DataFrame({"text": ["one", "two\nlines", "three", "four", "five"] * 40}).to_csv(path, index=False)
    jobs = split_large_files(plan_files(path, tmp_path / "o"), 7)
    with pytest.raises(InputError, match="line break inside a quoted field"):
        for part in jobs[0].parts:
            read_part(part)


def test_small_files_keep_one_output_file(tmp_path, varied_texts):
    path = tmp_path / "small.parquet"
    pd.DataFrame({"text": varied_texts}).to_parquet(path)
    jobs = split_large_files(plan_files(path, tmp_path / "o"), len(varied_texts))
    assert type(jobs[0]).__name__ == "FileJob" and jobs[0].target == tmp_path / "o" / "small.parquet"
    with pytest.raises(InputError, match="part_rows"):
        split_large_files(jobs, 0)
