"""write_report: one self-contained HTML page of a real classified frame, checked in a browser."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dask.dataframe as dd

from nemo_cls_dask import DistributedDataClassifier, InputError
from nemo_cls_dask.report import write_report
from nemo_cls_dask.testing import SAMPLE_TEXTS

ROOT = Path(__file__).resolve().parents[1]
BROWSER_CHECK = ROOT / "scripts" / "check_report_in_browser.py"


@pytest.fixture(scope="module")
def classified(head_checkpoint):
    """SAMPLE_TEXTS (plus two rows without text) through the tiny head checkpoint, with a truth column.

    The truth is the prediction for every third row, another of the model's labels for the
    next, and a label the model does not have (or no label) for the rest: all four cases
    the accuracy table separates.
    """
    texts = list(SAMPLE_TEXTS) + [None, "   "]
    classifier = DistributedDataClassifier(model_identifier=str(head_checkpoint), text_field="text",
                                           label_field="quality", score_field="quality_prob")
    frame = classifier(pd.DataFrame({"text": texts}))
    labels = classifier.describe().labels
    truth = []
    for i, predicted in enumerate(frame["quality"].astype(object)):
        if i % 3 == 0 or predicted is None or predicted != predicted:
            truth.append(predicted if i % 3 == 0 else labels[0])
        elif i % 3 == 1:
            truth.append(next(label for label in labels if label != predicted))
        else:
            truth.append("Unrated" if i % 2 else None)
    frame["truth"] = pd.Series(truth, index=frame.index, dtype=object)
    return frame, tuple(labels)


def values(frame: pd.DataFrame, column: str) -> list:
    return [None if v is None or v != v else v for v in frame[column].astype(object)]


def table_value(page: str, row_name: str) -> str:
    """The first value cell of the summary/accuracy table row named ``row_name``."""
    match = re.search(rf"<td>{re.escape(row_name)}</td><td[^>]*>([^<]*)</td>", page)
    assert match, f"no table row {row_name!r}"
    return match.group(1)


def embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'<img alt="[^"]+" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', page)]


def test_report_of_a_real_classified_frame(classified, tmp_path):
    frame, labels = classified
    timeline = [(0.0, 0, None), (1.5, 20, 0.91), (2.0, 20, 0.91), (3.0, len(frame), 0.93)]
    path = write_report(frame, tmp_path / "run.html", label_field="quality", score_field="quality_prob",
                        truth_field="truth", labels=labels, timeline=timeline, title="Tiny <model> run")
    assert path == tmp_path / "run.html"
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<title>Tiny &lt;model&gt; run</title>" in page  # escaped, not markup
    assert "<script" not in page and "http" not in page  # self-contained: nothing fetched

    # every plot is a real PNG: distribution, confidence, timeline, confusion matrix
    from PIL import Image

    pngs = embedded_pngs(page)
    assert len(pngs) == 4
    for png in pngs:
        with Image.open(io.BytesIO(png)) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 200

    predicted = values(frame, "quality")
    truth = values(frame, "truth")
    assert table_value(page, "rows") == f"{len(frame):,}"
    assert table_value(page, "rows with a null label (&lt;null&gt;: no usable text)") == str(predicted.count(None))
    assert predicted.count(None) == 2  # the two rows without text keep a null label
    for label, count in Counter(p for p in predicted if p is not None).items():
        assert f"<tr><td>{label}</td><td class=\"number\">{count:,}</td>" in page

    with_truth = [(p, t) for p, t in zip(predicted, truth) if t is not None]
    known = [(p, t) for p, t in with_truth if t in labels]
    assert 0 < len(known) < len(with_truth)  # the fixture has both kinds
    accuracy = sum(p == t for p, t in with_truth) / len(with_truth)
    known_accuracy = sum(p == t for p, t in known) / len(known)
    assert accuracy != known_accuracy
    assert table_value(page, "accuracy, all rows with a true label") == f"{accuracy:.3f}"
    assert table_value(page, "accuracy, rows whose true label the model can predict") == f"{known_accuracy:.3f}"
    assert table_value(page, "rows whose true label the model cannot predict") == f"{len(with_truth) - len(known):,}"
    assert table_value(page, "rows without a true label (not counted)") == f"{truth.count(None):,}"
    assert "Unrated (" in page  # the unknown true label is named

    assert table_value(page, "throughput (timeline)") == f"{len(frame) / 3.0:,.1f} docs/s"
    assert table_value(page, "padding efficiency (real / computed tokens)") == "0.930"


def test_without_score_truth_or_timeline_the_page_says_what_is_missing(classified, tmp_path):
    frame, _ = classified
    page = write_report(frame, tmp_path / "plain.html", label_field="quality").read_text()
    assert len(embedded_pngs(page)) == 1  # the label distribution only
    assert "No score_field given" in page
    assert "Accuracy" not in page and "Throughput" not in page


def test_truth_without_labels_reports_accuracy_and_asks_for_labels(classified, tmp_path):
    frame, _ = classified
    page = write_report(frame, tmp_path / "nolabels.html", label_field="quality", truth_field="truth").read_text()
    assert "Pass labels=" in page
    assert "cannot predict" not in page.split("Pass labels=")[0].split("<h2>Accuracy")[1]


def test_a_dask_frame_gives_the_same_page(classified, tmp_path):
    frame, labels = classified
    options = dict(label_field="quality", score_field="quality_prob", truth_field="truth", labels=labels)
    from_pandas = write_report(frame, tmp_path / "pandas.html", **options).read_text()
    from_dask = write_report(dd.from_pandas(frame, npartitions=3), tmp_path / "dask.html", **options).read_text()
    assert from_dask == from_pandas


def test_a_multi_label_frame_counts_each_label(multilabel_checkpoint, tmp_path):
    classifier = DistributedDataClassifier(model_identifier=str(multilabel_checkpoint), text_field="text",
                                           label_field="tags", score_field="tags_prob")
    frame = classifier(pd.DataFrame({"text": SAMPLE_TEXTS}))
    page = write_report(frame, tmp_path / "multi.html", label_field="tags", score_field="tags_prob").read_text()
    counts = Counter(label for row in frame["tags"].tolist() if row is not None for label in row)
    assert counts  # the tiny model gives some labels
    for label, count in counts.items():
        assert f"<tr><td>{label}</td><td class=\"number\">{count:,}</td>" in page
    assert "Multi-label output" in page


def test_an_empty_frame_gives_a_page_that_says_so(classified, tmp_path):
    frame, _ = classified
    page = write_report(frame.iloc[:0], tmp_path / "empty.html", label_field="quality", score_field="quality_prob").read_text()
    assert "The frame has no rows." in page
    assert embedded_pngs(page) == []


@pytest.mark.parametrize("option, column", [("label_field", "nope"), ("score_field", "prob"), ("truth_field", "section")])
def test_a_missing_column_is_named_and_nothing_is_written(classified, tmp_path, option, column):
    frame, _ = classified
    kwargs = {"label_field": "quality"} | {option: column}
    with pytest.raises(InputError, match=rf"{option}='{column}' is not a column.*columns: \['text'"):
        write_report(frame, tmp_path / "r.html", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_file_a_folder_or_a_link(classified, tmp_path):
    frame, _ = classified
    existing = tmp_path / "mine.html"
    existing.write_text("the user's own page")
    with pytest.raises(InputError, match="exists and is not a report this package wrote; pass overwrite=True"):
        write_report(frame, existing, label_field="quality")
    assert existing.read_text() == "the user's own page"
    folder = tmp_path / "folder.html"
    folder.mkdir()
    with pytest.raises(InputError, match="is a folder"):
        write_report(frame, folder, label_field="quality", overwrite=True)
    link = tmp_path / "link.html"
    link.symlink_to(existing)
    with pytest.raises(InputError, match="symbolic link"):
        write_report(frame, link, label_field="quality", overwrite=True)
    assert existing.read_text() == "the user's own page"
    with pytest.raises(InputError, match=r"should end in \.html"):
        write_report(frame, tmp_path / "report.png", label_field="quality")
    write_report(frame, existing, label_field="quality", overwrite=True)
    assert existing.read_text().startswith("<!DOCTYPE html>")
    write_report(frame, existing, label_field="quality", title="again")  # its own report: replaced without overwrite
    assert "<title>again</title>" in existing.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.html", "link.html", "mine.html"]  # no temporaries left


@pytest.mark.parametrize("timeline, message", [
    ([(0.0, 0)], r"rows are \(seconds, rows_done, padding\)"),
    ([(0.0, 0, None), (2.0, 10, None), (1.0, 12, None)], "must never decrease"),
    ([(0.0, 5, None), (1.0, 3, None)], "must never decrease"),
])
def test_a_malformed_timeline_is_refused(classified, tmp_path, timeline, message):
    frame, _ = classified
    with pytest.raises(InputError, match=message):
        write_report(frame, tmp_path / "r.html", label_field="quality", timeline=timeline)


def test_labels_must_be_names(classified, tmp_path):
    frame, _ = classified
    with pytest.raises(InputError, match="labels must be a sequence of label names"):
        write_report(frame, tmp_path / "r.html", label_field="quality", labels="High")


def _chromium() -> str | None:
    sys.path.insert(0, str(BROWSER_CHECK.parent))
    try:
        from check_report_in_browser import find_chromium
    finally:
        sys.path.pop(0)
    return find_chromium()


@pytest.mark.skipif(_chromium() is None, reason="no chromium on PATH (Debian: apt-get install -y chromium)")
def test_the_page_renders_in_headless_chromium_with_no_broken_images(classified, tmp_path):
    frame, labels = classified
    page = write_report(frame, tmp_path / "run.html", label_field="quality", score_field="quality_prob",
                        truth_field="truth", labels=labels, timeline=[(0.0, 0, None), (1.0, 10, 0.9), (2.0, len(frame), 0.92)])
    shot = tmp_path / "shot.png"
    result = subprocess.run([sys.executable, str(BROWSER_CHECK), str(page), "--screenshot", str(shot)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   images decoded: 4 image(s), all decoded" in result.stdout
    assert "ok   screenshot not blank" in result.stdout
    assert shot.stat().st_size > 10_000


@pytest.mark.skipif(_chromium() is None, reason="no chromium on PATH (Debian: apt-get install -y chromium)")
def test_the_browser_check_catches_a_broken_image(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><title>t</title></head><body><h1>A page</h1>'
                    '<img alt="bad plot" src="data:image/png;base64,bm90IGEgcG5n"></body></html>')
    result = subprocess.run([sys.executable, str(BROWSER_CHECK), str(page)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "FAIL images decoded" in result.stdout and "bad plot" in result.stdout
