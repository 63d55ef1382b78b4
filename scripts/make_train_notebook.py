"""Write notebooks/train_and_classify.ipynb from the cells below, executed, with its outputs.

Run after editing the cells: ``python3 scripts/make_train_notebook.py``. Kept short for the
test suite (which executes every notebook): a few hundred rows and a frozen backbone, so it
runs in well under two minutes on a laptop CPU.
"""

from pathlib import Path

from make_notebooks import write_executed

CELLS = [
    ("markdown", """# Train a classifier, then run it as a Dask operator

`TextClassifier` fine-tunes a transformer (here all-MiniLM-L6-v2, packaged on PyPI, so
nothing is downloaded) scikit-learn style, and `save_pretrained` writes a folder that
`DistributedDataClassifier` and `nemo-cls-dask classify --model DIR` load unchanged.
To stay quick, this notebook trains only the head on a frozen backbone
(`frozen_backbone=True`), the fast path on CPU; drop it to fine-tune the whole model."""),
    ("code", """import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import pandas as pd
from nemo_cls_dask import TextClassifier
from nemo_cls_dask.io import SAMPLE_PATH

sample = pd.read_parquet(SAMPLE_PATH)                 # Debian package descriptions + their section
sections = sample["section"].value_counts().index[:5] # 5 sections keep it small
data = sample[sample["section"].isin(sections)].reset_index(drop=True)
train, test = data.iloc[:400], data.iloc[400:600]
train["section"].value_counts()"""),
    ("code", """clf = TextClassifier(
    "sentence-transformers/all-MiniLM-L6-v2",
    problem="single_label",
    frozen_backbone=True,      # train the head on pooled embeddings computed once
    epochs=20, learning_rate=3e-3, max_len=64, seed=0, verbose=False,
)
clf.fit(train, text_field="text", label_field="section", progress=True)   # bars even though a notebook is no terminal
history = pd.DataFrame([{"epoch": h["epoch"], "train_loss": h["train_loss"], **h["validation"]} for h in clf.history_])
history.tail(3)"""),
    ("markdown", "The learning curves: the training loss keeps falling; the validation loss says when to stop."),
    ("code", """import matplotlib.pyplot as plt

fig, (losses, accuracy) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
history.plot(x="epoch", y=["train_loss", "loss"], label=["training loss", "validation loss"], ax=losses, marker=".")
losses.set(title="loss per epoch", ylabel="cross-entropy")
history.plot(x="epoch", y="accuracy", ax=accuracy, marker=".", legend=False, color="#3b6ea5")
accuracy.set(title="validation accuracy", ylim=(0, 1))
plt.show()"""),
    ("code", """print(clf.evaluate(test, text_field="text", label_field="section"))
proba = clf.predict_proba(test["text"].head(3))      # numpy (rows, labels), columns in clf.labels_ order
pd.DataFrame(proba, columns=clf.labels_).round(3)"""),
    ("markdown", "Save it, and run the saved folder as a lazy Dask operator:"),
    ("code", """import tempfile
import dask.dataframe as dd
from nemo_cls_dask import DistributedDataClassifier

folder = clf.save_pretrained(tempfile.mkdtemp() + "/debian-sections")
print(sorted(p.name for p in folder.iterdir()))
ddf = dd.from_pandas(test, npartitions=2, sort=False)
out = DistributedDataClassifier(model_identifier=str(folder), label_field="pred", score_field="prob")(ddf)
result = out.compute(scheduler="sync")
print("accuracy:", (result["pred"] == result["section"]).mean())
result[["package", "section", "pred"]].head()"""),
]


if __name__ == "__main__":
    write_executed(CELLS, Path(__file__).resolve().parent.parent / "notebooks" / "train_and_classify.ipynb")
