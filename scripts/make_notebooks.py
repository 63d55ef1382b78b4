"""Write notebooks/quickstart.ipynb from the cells below (run after editing them).

Keeping the source here makes notebook diffs readable; the test suite executes the
notebook itself.
"""

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
    ("markdown", "Each worker loaded the model once and keeps it for later calls:"),
    ("code", """client.run(load_counts)"""),
    ("markdown", "Keep only some labels with `filter_by`:"),
    ("code", """games = DebianTopicClassifier(label_field="topic", filter_by=["games", "science"])(ddf).compute()
games[["package", "topic"]].head()"""),
    ("code", """cluster = client.cluster
client.close(); cluster.close()"""),
]


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text)
        for kind, text in cells
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


if __name__ == "__main__":
    folder = Path(__file__).resolve().parent.parent / "notebooks"
    nbformat.write(build(QUICKSTART), folder / "quickstart.ipynb")
    print("wrote", folder / "quickstart.ipynb")
