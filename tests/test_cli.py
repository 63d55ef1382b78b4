"""``nemo-cls-dask classify`` over folders: one output per input, atomic, resumable, safe.

Also the security hygiene of loading: checkpoints never run code, inputs are never
overwritten, write errors name the path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import nemo_cls_dask.io as nemo_io
from nemo_cls_dask import DistributedDataClassifier, ModelLoadError
from nemo_cls_dask.cli import main
from nemo_cls_dask.io import OutputError, find_invalid_utf8, plan_files, write_atomic
from tolerances import assert_labels_agree, score_rows

N_FILES = 8


def make_folder(root: Path, texts: list[str], rows: int, fmt: str = "parquet", files: int = N_FILES) -> Path:
    root.mkdir(parents=True)
    for f in range(files):
        frame = pd.DataFrame({
            "text": [texts[(f * 31 + i * 7) % len(texts)] for i in range(rows)],
            "doc": [f"f{f}-r{i}" for i in range(rows)],
        })
        sub = root / ("a" if f % 2 else "b")
        sub.mkdir(exist_ok=True)
        if fmt == "parquet":
            frame.to_parquet(sub / f"part-{f}.parquet")
        else:
            frame.to_json(sub / f"part-{f}.jsonl", orient="records", lines=True, force_ascii=False)
    return root


def read_any(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=True)


def finished(output: Path) -> list[Path]:
    """Output files under their final names (not temporaries, the lock or the manifest)."""
    return sorted(p for p in output.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))


def cli(*args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.Popen(
        [sys.executable, "-m", "nemo_cls_dask", "classify", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, **kwargs,
    )


# --------------------------------------------------------------------------- planning, atomic writes


def test_plan_keeps_relative_paths_and_formats(tmp_path, varied_texts):
    source = make_folder(tmp_path / "in", varied_texts, 3, fmt="jsonl", files=3)
    (source / "b" / ".part-9.jsonl.abc.tmp").write_text("junk")  # never an input
    jobs = plan_files(source, tmp_path / "out")
    assert [j.target.relative_to(tmp_path / "out").as_posix() for j in jobs] == ["a/part-1.jsonl", "b/part-0.jsonl", "b/part-2.jsonl"]
    jobs = plan_files(source, tmp_path / "out", "parquet")
    assert all(j.target.suffix == ".parquet" and j.output_format == "parquet" for j in jobs)
    single = plan_files(source / "a" / "part-1.jsonl", tmp_path / "out")
    assert [j.target for j in single] == [tmp_path / "out" / "part-1.jsonl"]


def test_write_atomic_leaves_no_partial_file(tmp_path, monkeypatch):
    frame = pd.DataFrame({"text": ["a", "b"]}, index=[3, 3])
    target = tmp_path / "out" / "x.parquet"
    write_atomic(frame, target, "parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(target), frame)

    def explode(frame, path, **kwargs):
        Path(path).write_bytes(b"PAR1 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nemo_io, "write_parquet", explode)
    other = tmp_path / "out" / "y.parquet"
    with pytest.raises(OutputError, match="No space left") as error:
        write_atomic(frame, other, "parquet")
    assert str(other) in str(error.value)
    assert not other.exists() and [p.name for p in (tmp_path / "out").iterdir()] == ["x.parquet"]


def test_write_error_names_the_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = blocker / "sub" / "x.parquet"  # parent is a file: fails for root too
    with pytest.raises(OutputError) as error:
        write_atomic(pd.DataFrame({"a": [1]}), target, "parquet")
    assert str(target) in str(error.value)


def test_cli_unwritable_output_fails_before_compute(tmp_path, varied_texts, head_checkpoint, capsys):
    source = make_folder(tmp_path / "in", varied_texts, 2, files=1)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["classify", str(source), str(blocker / "out"), "--model", str(head_checkpoint)]) == 2
    assert str(blocker / "out") in capsys.readouterr().err
    if os.geteuid() == 0:
        return  # root ignores permission bits: the parent-is-a-file case above covers it
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o500)
    try:
        assert main(["classify", str(source), str(readonly), "--model", str(head_checkpoint)]) == 2
        assert str(readonly) in capsys.readouterr().err
    finally:
        readonly.chmod(0o700)


# --------------------------------------------------------------------------- inputs never overwritten


@pytest.mark.parametrize("where", ["same", "inside-input", "input-inside-output"])
def test_output_never_overlaps_input(where, tmp_path, varied_texts, head_checkpoint, capsys):
    source = make_folder(tmp_path / "in", varied_texts, 2, files=2)
    before = {p: p.read_bytes() for p in source.rglob("*") if p.is_file()}
    if where == "same":
        args = [str(source), str(source)]
    elif where == "inside-input":
        args = [str(source), str(source / "out")]
    else:
        args = [str(source / "a"), str(source)]
    assert main(["classify", *args, "--model", str(head_checkpoint), "--overwrite"]) == 2
    assert "overlaps the input" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in source.rglob("*") if p.is_file()} == before


# --------------------------------------------------------------------------- checkpoints never run code


def test_auto_map_checkpoint_never_imports_its_code(tmp_path, copy_checkpoint, hf_checkpoint):
    checkpoint = copy_checkpoint(hf_checkpoint, "evil")
    marker = tmp_path / "EXECUTED"
    (checkpoint / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\nclass EvilModel: pass\n")
    (checkpoint / "configuration_evil.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    config = json.loads((checkpoint / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModelForSequenceClassification": "modeling_evil.EvilModel",
    }
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="auto_map") as error:
        DistributedDataClassifier(model_identifier=checkpoint)(pd.DataFrame({"text": ["hi"]}))
    assert str(checkpoint / "config.json") in str(error.value) and "never runs code" in str(error.value)
    from nemo_cls_dask.models.loading import get_model

    with pytest.raises(ModelLoadError, match="auto_map"):
        get_model(str(checkpoint), None, "cpu")
    config["model_type"] = "evil"  # an unknown architecture that only the folder's code defines
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError):
        get_model(str(checkpoint), None, "cpu")
    assert not marker.exists()
    assert "modeling_evil" not in sys.modules and "configuration_evil" not in sys.modules


def test_trust_remote_code_is_never_passed():
    import nemo_cls_dask

    root = Path(nemo_cls_dask.__file__).parent
    offenders = [str(p) for p in root.rglob("*.py") if "trust_remote_code=True" in p.read_text()]
    assert offenders == []


# --------------------------------------------------------------------------- invalid UTF-8


def test_invalid_utf8_jsonl_names_file_and_line(tmp_path, head_checkpoint, capsys):
    source = tmp_path / "in"
    source.mkdir()
    good = b'{"text": "fine text"}\n'
    (source / "bad.jsonl").write_bytes(good * 3 + b'{"text": "broken \xff\xfe here"}\n' + good)
    assert find_invalid_utf8(source / "bad.jsonl") == (4, len(good) * 3 + len(b'{"text": "broken '))
    output = tmp_path / "out"
    code = main(["classify", str(source), str(output), "--model", str(head_checkpoint), "--n-workers", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "bad.jsonl" in err and "line 4" in err and "--encoding-errors replace" in err
    assert finished(output) == []  # nothing half-written
    code = main(["classify", str(source), str(output), "--model", str(head_checkpoint), "--n-workers", "1",
                 "--encoding-errors", "replace", "--score-field", "p"])
    assert code == 0
    out = pd.read_json(output / "bad.jsonl", lines=True)
    assert len(out) == 5 and "\ufffd" in out["text"].iloc[3] and out["preds"].notna().all()
    assert all(isinstance(row, list) and len(row) == 3 for row in out["p"])  # list columns survive jsonl


# --------------------------------------------------------------------------- interrupted runs


@pytest.mark.slow
def test_killed_run_resumes_without_loss_or_duplicates(tmp_path, varied_texts, head_checkpoint):
    rows = 80
    source = make_folder(tmp_path / "in", varied_texts, rows)
    output = tmp_path / "out"
    args = [str(source), str(output), "--model", str(head_checkpoint), "--n-workers", "2", "--batch-tokens", "128", "--autocast", "fp32"]
    process = cli(*args)
    deadline = time.time() + 240
    while not finished(output) and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # the CLI, its scheduler and its worker processes
    process.wait()
    first = finished(output)
    assert first, "no output appeared before the deadline"
    assert len(first) < N_FILES, "the run ended before it could be interrupted; make it slower"
    for path in first:  # whatever has a final name is complete
        frame = read_any(path)
        assert len(frame) == rows and frame["preds"].notna().all()

    leftover = output / "a" / ".part-1.parquet.deadbeef0000.tmp"  # as a killed writer leaves it
    leftover.parent.mkdir(parents=True, exist_ok=True)  # the kill may come before any file of a/
    leftover.write_bytes(b"PAR1 half-written")
    process = cli(*args)
    log, _ = process.communicate(timeout=300)
    assert process.returncode == 0, log
    assert f"{N_FILES - len(first)} written, {len(first)} skipped (already complete), 0 failed" in log
    assert "removed" in log and "temporary" in log
    assert not list(output.rglob(".*.tmp"))
    outputs = finished(output)
    assert [p.relative_to(output) for p in outputs] == [p.relative_to(source) for p in sorted(source.rglob("*.parquet"))]
    union = pd.concat([read_any(p) for p in outputs])
    expected = pd.concat([pd.read_parquet(p) for p in sorted(source.rglob("*.parquet"))])
    assert sorted(union["doc"]) == sorted(expected["doc"])  # every row exactly once
    assert union["doc"].is_unique and union["preds"].notna().all()
    # Files of the first run equal what the second would have written.
    reference = DistributedDataClassifier(model_identifier=head_checkpoint, batch_tokens=128, autocast=False, score_field="p")
    for path in first:
        frame = read_any(path)
        again = reference(frame[["text", "doc"]])  # one file, not the CLI's partitions: other batches
        assert_labels_agree(frame["preds"], again["preds"], score_rows(again["p"]))

    process = cli(*args)  # a third run has nothing to do
    log, _ = process.communicate(timeout=120)
    assert process.returncode == 0 and f"0 written, {N_FILES} skipped" in log, log


def test_overwrite_redoes_files(tmp_path, varied_texts, head_checkpoint, capsys):
    source = make_folder(tmp_path / "in", varied_texts, 4, files=2)
    output = tmp_path / "out"
    assert main(["classify", str(source), str(output), "--model", str(head_checkpoint), "--n-workers", "1", "--format", "jsonl"]) == 0
    log = capsys.readouterr().out
    assert "2 written, 0 skipped" in log and "rows: 8" in log and "label counts" in log
    files = finished(output)
    assert [p.suffix for p in files] == [".jsonl", ".jsonl"]
    stamps = {p: p.stat().st_mtime_ns for p in files}
    time.sleep(0.01)
    assert main(["classify", str(source), str(output), "--model", str(head_checkpoint), "--format", "jsonl"]) == 0
    assert "0 written, 2 skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    assert main(["classify", str(source), str(output), "--model", str(head_checkpoint), "--n-workers", "1", "--format", "jsonl", "--overwrite"]) == 0
    assert "2 written, 0 skipped" in capsys.readouterr().out
    assert all(p.stat().st_mtime_ns != stamps[p] for p in files)


@pytest.mark.parametrize("command", [[], ["classify"], ["train"]])
def test_help_imports_nothing_heavy(command):
    """``--help`` is instant: parsing loads neither torch, dask, pandas nor transformers (issue 15 item 10)."""
    code = (
        "import sys\n"
        "from nemo_cls_dask.cli import main\n"
        "try:\n"
        f"    main({command + ['--help']!r})\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0\n"
        "print(sorted(m for m in ('torch', 'dask', 'distributed', 'pandas', 'pyarrow', 'transformers', 'tokenizers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: nemo-cls-dask" in done.stdout and done.stdout.strip().splitlines()[-1] == "[]"
