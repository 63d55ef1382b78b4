"""The head module's Hugging Face round trip, and get_client joining existing clusters."""

import json

import pandas as pd
import pytest
import torch
from distributed import LocalCluster

from nemo_cls_dask import BackboneHeadModel, DistributedDataClassifier, get_client
from nemo_cls_dask.testing import SAMPLE_TEXTS


def test_head_module_from_pretrained_save_pretrained_round_trip(head_checkpoint, tmp_path):
    model = BackboneHeadModel.from_pretrained(str(head_checkpoint))
    assert callable(model.push_to_hub)
    assert model.config["id2label"] == json.loads((head_checkpoint / "config.json").read_text())["id2label"]
    saved = tmp_path / "saved"
    model.save_pretrained(saved)
    for name in ("tokenizer.json", "tokenizer_config.json"):  # the mixin saves weights and config only
        (saved / name).write_bytes((head_checkpoint / name).read_bytes())
    assert {"config.json", "model.safetensors"} <= {p.name for p in saved.iterdir()}
    frame = pd.DataFrame({"text": SAMPLE_TEXTS[:12]})
    original = DistributedDataClassifier(model_identifier=head_checkpoint, score_field="p")(frame)
    reloaded = DistributedDataClassifier(model_identifier=saved, score_field="p")(frame)
    assert original["preds"].tolist() == reloaded["preds"].tolist()
    before = torch.tensor(original["p"].tolist())
    after = torch.tensor(reloaded["p"].tolist())
    assert torch.allclose(before, after, atol=1e-6)


def test_get_client_joins_an_existing_scheduler_by_address_and_file(tmp_path):
    scheduler_file = tmp_path / "scheduler.json"
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0",
        scheduler_kwargs={"scheduler_file": str(scheduler_file)},
    ) as cluster:
        # One client at a time: each restores dask's scheduler setting when it closes.
        for how in ({"address": cluster.scheduler_address}, {"scheduler_file": str(scheduler_file)}):
            with get_client(**how) as client:
                assert client.scheduler.address == cluster.scheduler_address
                assert len(client.scheduler_info()["workers"]) == 1


def test_get_client_refuses_gpu_without_one():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        get_client(device="gpu")
    with pytest.raises(ValueError, match="device must be one of"):
        get_client(device="tpu")
