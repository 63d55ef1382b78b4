"""``classify --report PATH``: an HTML page from the run's output files, the path checked before any cluster."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from nemo_cls_dask.cli import main
from nemo_cls_dask.testing import SAMPLE_TEXTS


@pytest.fixture
def source(tmp_path) -> Path:
    """Two parquet files with a truth column: one of the tiny model's labels, or one it lacks."""
    folder = tmp_path / "in"
    folder.mkdir()
    for f in range(2):
        texts = SAMPLE_TEXTS[f * 12:(f + 1) * 12]
        truth = ["High", "Low", "Medium", "Unrated"] * 3
        pd.DataFrame({"text": texts, "truth": truth}).to_parquet(folder / f"part-{f}.parquet")
    return folder


def table_value(page: str, row_name: str) -> str:
    match = re.search(rf"<td>{re.escape(row_name)}</td><td[^>]*>([^<]*)</td>", page)
    assert match, f"no table row {row_name!r}"
    return match.group(1)


def test_classify_writes_a_report_from_its_outputs(source, tmp_path, head_checkpoint, capsys):
    output, report = tmp_path / "out", tmp_path / "run.html"
    argv = ["classify", str(source), str(output), "--model", str(head_checkpoint), "--score-field", "p",
            "--truth-field", "truth", "--n-workers", "1", "--report", str(report)]
    assert main(argv + ["--progress"]) == 0
    shown = capsys.readouterr()
    assert f"report: {report}" in shown.out
    assert re.search(r"classify: 100%.*24/24 \[", shown.err)  # the forced bar: total from the parquet footers
    page = report.read_text(encoding="utf-8")
    outputs = pd.concat([pq.read_table(p, columns=["preds", "truth"]).to_pandas() for p in sorted(output.glob("*.parquet"))])
    assert table_value(page, "rows") == str(len(outputs))
    for label, count in Counter(outputs["preds"]).items():
        assert f"<tr><td>{label}</td><td class=\"number\">{count:,}</td>" in page
    known = outputs[outputs["truth"] != "Unrated"]
    assert table_value(page, "accuracy, all rows with a true label") == f"{(outputs['preds'] == outputs['truth']).mean():.3f}"
    assert table_value(page, "accuracy, rows whose true label the model can predict") == f"{(known['preds'] == known['truth']).mean():.3f}"
    assert table_value(page, "rows whose true label the model cannot predict") == str(len(outputs) - len(known))
    assert "Throughput and padding over the run" in page and "Confusion matrix" in page
    assert page.count('src="data:image/png;base64,') == 4

    # A resumed run (nothing to do) rewrites its own report without --overwrite.
    assert main(argv) == 0
    assert report.read_text(encoding="utf-8").count('src="data:image/png;base64,') >= 3


def test_a_report_path_that_is_someone_elses_file_is_refused_before_any_work(source, tmp_path, head_checkpoint, capsys):
    report = tmp_path / "notes.html"
    report.write_text("my notes")
    output = tmp_path / "out"
    argv = ["classify", str(source), str(output), "--model", str(head_checkpoint), "--report", str(report)]
    assert main(argv) == 2
    assert "is not a report this package wrote" in capsys.readouterr().err
    assert report.read_text() == "my notes" and not output.exists()  # refused before the output folder or a cluster
    (tmp_path / "folder.html").mkdir()
    assert main(argv[:-1] + [str(tmp_path / "folder.html")]) == 2
    assert "is a folder" in capsys.readouterr().err and not output.exists()
