"""Write notebooks/quickstart.ipynb from the cells below, executed, with its outputs.

Run after editing the cells: ``python3 scripts/make_notebooks.py``. Keeping the source here
makes notebook diffs readable. The notebook is executed before it is written (in a fresh
temporary folder), so a reader on the web sees the tables and plots; the test suite
executes it again and checks that the committed cells match these.
"""

import sys
import tempfile
from pathlib import Path

import nbformat

QUICKSTART = [
    ("markdown", """# nemo_cls_dask quickstart

Classify the text of a Dask DataFrame with a transformer, on a local CPU cluster (the same
code runs on a GPU cluster: `get_client()` starts a `LocalCUDACluster` when GPUs and
dask-cuda are there). The model is the packaged `debian-topics` classifier: the
all-MiniLM-L6-v2 backbone with a head trained on Debian package descriptions, so nothing
is downloaded."""),
    ("code", """import dask.dataframe as dd
from nemo_cls_dask import DebianTopicClassifier, get_client, load_counts
from nemo_cls_dask.io import SAMPLE_PATH

client = get_client(n_workers=2)   # LocalCluster with 2 single-threaded worker processes
client"""),
    ("markdown", "Held-out Debian package descriptions (the head never saw them), with their true section:"),
    ("code", """import pandas as pd

sample = pd.read_parquet(SAMPLE_PATH).head(400)   # a quick subset; drop .head(400) for all 3,000 rows
ddf = dd.from_pandas(sample, npartitions=4, sort=False)
ddf"""),
    ("markdown", "Applying the classifier is lazy: it checks the model and the columns now and builds the graph."),
    ("code", """classifier = DebianTopicClassifier(label_field="topic", score_field="topic_prob")
out = classifier(ddf)
out.dtypes"""),
    ("code", """result = out.compute()
result[["package", "section", "topic"]].head(10)"""),
    ("code", """accuracy = (result["topic"] == result["section"]).mean()
print(f"accuracy on {len(result)} held-out rows: {accuracy:.3f}")
assert len(result) == len(ddf) and result.index.equals(ddf.index.compute())"""),
    ("markdown", """What the model predicted, and how sure it was: rows it got right are mostly near the top
probability of 1, the mistakes spread lower down."""),
    ("code", """import matplotlib.pyplot as plt
import numpy as np

top = np.array([max(p) for p in result["topic_prob"]])   # the top probability of each row
correct = (result["topic"] == result["section"]).to_numpy()
fig, (counts, sure) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
result["topic"].value_counts().sort_values().plot.barh(ax=counts, color="#3b6ea5", title="predicted topic")
counts.set_xlabel("rows")
sure.hist([top[correct], top[~correct]], bins=np.linspace(0, 1, 21), stacked=True,
          label=["correct", "wrong"], color=["#3b6ea5", "#d9822b"])
sure.set(title="top probability", xlabel="probability of the predicted topic", ylabel="rows")
sure.legend()
plt.show()"""),
    ("markdown", """The same in one HTML page to share (label distribution, confidence per label, accuracy
on rows whose section the model knows, confusion matrix), with `write_report`
(`nemo-cls-dask classify --report PATH` writes it from the command line):"""),
    ("code", """import tempfile
from nemo_cls_dask import write_report

page = write_report(result, tempfile.mkdtemp() + "/quickstart_report.html", label_field="topic",
                    score_field="topic_prob", truth_field="section", labels=classifier.describe().labels)
print(f"wrote {page} ({page.stat().st_size // 1024} KiB)")"""),
    ("markdown", "Each worker loaded the model once and keeps it for later calls:"),
    ("code", """client.run(load_counts)"""),
    ("markdown", "Keep only some labels with `filter_by`:"),
    ("code", """games = DebianTopicClassifier(label_field="topic", filter_by=["games", "science"])(ddf).compute()
games[["package", "topic"]].head()"""),
    ("code", """cluster = client.cluster
client.close(); cluster.close()"""),
]


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """A notebook of these (kind, source) cells, without outputs."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text)
        for kind, text in cells
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def execute(notebook: nbformat.NotebookNode, workdir: str | Path, timeout: int = 900) -> nbformat.NotebookNode:
    """Run every cell in ``workdir`` (the test suite calls this too); raises on a failing cell.

    Streams are merged and carriage returns applied (``coalesce_streams``), so a progress
    bar is stored as its final line; no per-cell timing metadata keeps diffs small.
    """
    import nbclient

    client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3", coalesce_streams=True,
                                     record_timing=False, resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return notebook


def write_executed(cells: list[tuple[str, str]], target: Path) -> None:
    """Build, execute (in a fresh temporary folder) and write the notebook with its outputs."""
    notebook = build(cells)
    with tempfile.TemporaryDirectory(prefix="notebook-run-") as workdir:
        execute(notebook, workdir)
    nbformat.write(notebook, target)
    print("wrote", target, file=sys.stderr)


if __name__ == "__main__":
    write_executed(QUICKSTART, Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb")
