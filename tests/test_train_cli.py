"""``nemo-cls-dask train`` end to end, through the functions of nemo_cls_dask.cli.train."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from nemo_cls_dask import DistributedDataClassifier
from nemo_cls_dask.cli.train import add_parser as add_train_parser, run as run_train
from nemo_cls_dask.testing import make_backbone_checkpoint

FILLER = "the of and to a in is it you that he was for on are with as".split()


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = [("apple", "banana")[i % 2] for i in range(n)]
    texts = [" ".join(list(rng.choice(FILLER, 4)) + [label, label]) for label in labels]
    return pd.DataFrame({"body": texts, "kind": labels})


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nemo-cls-dask")
    add_train_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_train_command_end_to_end(tmp_path, capsys):
    backbone = make_backbone_checkpoint(tmp_path / "backbone")
    _frame(120, 0).to_parquet(tmp_path / "train.parquet")
    _frame(30, 1).to_json(tmp_path / "valid.jsonl", orient="records", lines=True)
    out = tmp_path / "model"
    args = _parse([
        "train", str(tmp_path / "train.parquet"), "--text-field", "body", "--label-field", "kind",
        "--backbone", str(backbone), "--out", str(out), "--problem", "single_label", "--epochs", "2",
        "--lr", "1e-3", "--batch-tokens", "256", "--max-len", "16", "--validation", str(tmp_path / "valid.jsonl"),
        "--seed", "1", "--quiet",
    ])
    assert args.command == "train"
    assert run_train(args) == 0
    printed = capsys.readouterr().out
    assert "validation metrics" in printed and "accuracy" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "apple", "1": "banana"}
    result = DistributedDataClassifier(model_identifier=str(out), text_field="body")(_frame(5, 2))
    assert set(result["preds"]) <= {"apple", "banana"}
    # an existing output folder needs --overwrite; errors exit with code 2
    assert run_train(args) == 2
    assert "already exists" in capsys.readouterr().err


def test_train_command_frozen_in_memory(tmp_path, capsys):
    backbone = make_backbone_checkpoint(tmp_path / "backbone")
    _frame(80, 0).to_parquet(tmp_path / "train.parquet")
    args = _parse([
        "train", str(tmp_path / "train.parquet"), "--text-field", "body", "--label-field", "kind",
        "--backbone", str(backbone), "--out", str(tmp_path / "m"), "--frozen-backbone", "--epochs", "2",
        "--lr", "1e-2", "--in-memory", "--quiet", "--max-len", "16",
    ])
    assert run_train(args) == 0
    assert "validation metrics" in capsys.readouterr().out
    bad = _parse(["train", str(tmp_path / "train.parquet"), "--label-field", "missing", "--backbone", str(backbone),
                  "--out", str(tmp_path / "m2"), "--quiet"])
    assert run_train(bad) == 2
    assert "missing" in capsys.readouterr().err
