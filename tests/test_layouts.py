"""The checkpoint-layout registry: built-in layouts, and a new layout added from one file."""

from __future__ import annotations

import json
import subprocess
import sys

import dask
import dask.dataframe as dd
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from nemo_cls_dask import DistributedDataClassifier, describe_model
from nemo_cls_dask.models.layouts import layout_for, registered_layouts, unregister_layout
from nemo_cls_dask.testing import SAMPLE_TEXTS, make_tokenizer

LABELS = ["alpha", "beta", "gamma"]


@pytest.fixture
def mean_bag_layout():
    import toy_layout  # registers the layout

    yield toy_layout
    unregister_layout(toy_layout.NAME)


def make_mean_bag(folder, seed=0):
    tokenizer = make_tokenizer("bert", max_len=64)
    tokenizer.save_pretrained(folder)
    generator = torch.Generator().manual_seed(seed)
    dim = 8
    tensors = {
        "embedding.weight": torch.randn(len(tokenizer), dim, generator=generator),
        "fc.weight": torch.randn(len(LABELS), dim, generator=generator),
        "fc.bias": torch.randn(len(LABELS), generator=generator),
    }
    save_file(tensors, str(folder / "model.safetensors"))
    config = {
        "architecture": "mean-bag", "mean_bag": {"vocab_size": len(tokenizer), "dim": dim},
        "id2label": {str(i): label for i, label in enumerate(LABELS)}, "max_len": 64,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return tokenizer, tensors


def test_builtin_layouts_are_registered_and_the_head_layout_is_tried_last():
    names = [layout.name for layout in registered_layouts()]
    assert {"head", "hf", "multihead", "composed", "kimcnn"} <= set(names)
    assert names[-1] == "head"
    assert layout_for({"model_type": "bert"}, "x").name == "hf"
    assert layout_for({"target_sizes": {"a": 2}}, "x").name == "multihead"
    assert layout_for({"architecture": "kimcnn"}, "x").name == "kimcnn"
    assert layout_for({"base_model": "m", "id2label": {"0": "a"}}, "x").name == "head"


def test_a_new_layout_in_one_file_loads_through_the_operator(tmp_path, mean_bag_layout):
    folder = tmp_path / "bag"
    folder.mkdir()
    tokenizer, tensors = make_mean_bag(folder)
    assert describe_model(str(folder)).layout == "mean-bag"
    texts = SAMPLE_TEXTS[:20]
    frame = dd.from_pandas(pd.DataFrame({"text": texts}), npartitions=3)
    with dask.config.set(scheduler="sync"):
        out = DistributedDataClassifier(model_identifier=str(folder), score_field="p")(frame).compute()
    # The same model computed by hand, row by row (fp32, one row per pass).
    module = mean_bag_layout.MeanBag(len(tokenizer), 8, len(LABELS))
    module.load_state_dict(tensors)
    expected = []
    for text in texts:
        ids = torch.tensor([tokenizer(text, truncation=True, max_length=64)["input_ids"]])
        with torch.no_grad():
            expected.append(LABELS[int(module(ids, torch.ones_like(ids)).argmax())])
    assert out["preds"].tolist() == expected
    assert len(set(expected)) > 1  # the check can tell labels apart


def test_a_layout_that_is_not_registered_falls_to_the_head_layout_with_a_clear_error(tmp_path):
    folder = tmp_path / "bag"
    folder.mkdir()
    make_mean_bag(folder)
    from nemo_cls_dask.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="base_model"):
        describe_model(str(folder))


_MODELS_ALONE = """
import importlib, importlib.util, pathlib, sys, types
# Stand-in for the package __init__ (which imports every layer), so only what the models
# layer itself imports gets loaded.
root = pathlib.Path(importlib.util.find_spec("nemo_cls_dask").origin).parent
package = types.ModuleType("nemo_cls_dask")
package.__path__ = [str(root)]
sys.modules["nemo_cls_dask"] = package
importlib.import_module("nemo_cls_dask.models")
print("\\n".join(sorted(name for name in sys.modules if name.startswith("nemo_cls_dask."))))
"""


def test_models_layer_imports_nothing_above_it():
    """Importing the models layer loads only itself and the two modules below it (errors, allocator):
    nothing of classifiers/, train/, lightweight/, active/, the engine or the CLI."""
    loaded = subprocess.run([sys.executable, "-c", _MODELS_ALONE], capture_output=True, text=True, check=True).stdout.split()
    assert "nemo_cls_dask.models.loading" in loaded and "nemo_cls_dask.models.composed" in loaded
    below = {"models", "errors", "allocator"}
    assert [name for name in loaded if name.split(".")[1] not in below] == []
