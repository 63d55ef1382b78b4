"""The CLI never deletes, overwrites or writes through what it does not own (issue 14 items 1-5).

Each test reproduces one data-loss case of the old CLI: a symlinked OUTPUT, an output
subfolder linked into the input, a user's own ``.x.tmp`` files, an interrupted
``--overwrite``, and two runs on one output folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from nemo_cls_dask.cli import main
from nemo_cls_dask.io import plan_files
from nemo_cls_dask.output_folder import LOCK_NAME, OutputLock, OutputLockedError, remove_own_temporaries

from test_cli import cli, finished, make_folder, read_any


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def test_symlinked_output_file_is_never_deleted(tmp_path, varied_texts, head_checkpoint, capsys):
    source = make_folder(tmp_path / "in", varied_texts, 2, files=1)
    precious = tmp_path / "precious.txt"
    precious.write_text("the user's data")
    output = tmp_path / "out"
    output.symlink_to(precious)
    assert main(["classify", str(source), str(output), "--model", str(head_checkpoint), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "is a link" in err and str(output) in err
    assert precious.read_text() == "the user's data" and output.is_symlink()
    # A plain file given as OUTPUT is never replaced by a folder either (issue 15 item 5).
    plain = tmp_path / "notes.parquet.txt"
    plain.write_text("keep me")
    assert main(["classify", str(source), str(plain), "--model", str(head_checkpoint), "--overwrite"]) == 2
    assert "is a file" in capsys.readouterr().err and plain.read_text() == "keep me"


@pytest.mark.parametrize("extra", [["--overwrite"], [], ["--format", "jsonl"]])
def test_output_subfolder_linked_into_input_is_refused(extra, tmp_path, varied_texts, head_checkpoint, capsys):
    source = make_folder(tmp_path / "in", varied_texts, 2, files=4)
    before = snapshot(source)
    output = tmp_path / "out"
    output.mkdir()
    (output / "a").symlink_to(source / "a", target_is_directory=True)
    code = main(["classify", str(source), str(output), "--model", str(head_checkpoint), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert "inside the input" in err and str(output / "a") in err
    assert snapshot(source) == before  # nothing deleted, replaced or added in the input
    assert not list(output.glob("b/*"))  # refused before anything was written


def test_only_this_plans_temporaries_are_removed(tmp_path, varied_texts):
    source = make_folder(tmp_path / "in", varied_texts, 2, files=4)
    output = tmp_path / "out"
    jobs = plan_files(source, output)
    (output / "a").mkdir(parents=True)
    leftover = output / "a" / ".part-1.parquet.0123456789ab.tmp"  # what a killed writer of a/part-1 leaves
    leftover.write_bytes(b"PAR1 half")
    users = [
        output / ".notes.tmp",
        output / "a" / ".x.tmp",
        output / "a" / ".part-1.parquet.tmp",  # no 12-hex token: not our pattern
        output / "a" / ".part-99.parquet.0123456789ab.tmp",  # not a planned target
        output / "a" / ".part-1.parquet.0123456789ab.tmp.bak",
    ]
    for path in users:
        path.write_text("user's own")
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    link = output / "a" / ".part-3.parquet.abcdefabcdef.tmp"  # matches the pattern but is a link
    link.symlink_to(outside)
    assert remove_own_temporaries(job.target for job in jobs) == [leftover]
    assert all(path.read_text() == "user's own" for path in users)
    assert link.is_symlink() and outside.read_text() == "not ours"


def _hold_lock_in_subprocess(folder: Path) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys, time
        from nemo_cls_dask.output_folder import OutputLock
        lock = OutputLock({str(folder)!r}, command="nemo-cls-dask classify first-run").acquire()
        print("locked", flush=True)
        time.sleep(600)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_second_run_on_a_locked_folder_names_the_holder(tmp_path, varied_texts, head_checkpoint, capsys, monkeypatch):
    source = make_folder(tmp_path / "in", varied_texts, 2, files=2)
    output = tmp_path / "out"
    output.mkdir()
    (output / "b").mkdir()
    theirs = output / "b" / ".part-0.parquet.0123456789ab.tmp"  # the first run is writing it
    theirs.write_bytes(b"PAR1 in progress")
    holder = _hold_lock_in_subprocess(output)

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started although the output folder is locked")

    monkeypatch.setattr("nemo_cls_dask.cluster.get_client", no_cluster)
    try:
        with pytest.raises(OutputLockedError, match=f"pid {holder.pid}"):
            OutputLock(output).acquire()
        assert main(["classify", str(source), str(output), "--model", str(head_checkpoint), "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert "in use by another run" in err and f"pid {holder.pid}" in err and "first-run" in err
        assert theirs.read_bytes() == b"PAR1 in progress"  # the first run's temporary file survives
        assert finished(output) == []
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_run_is_taken_over(tmp_path):
    holder = _hold_lock_in_subprocess(tmp_path)
    holder.send_signal(signal.SIGKILL)  # dies without releasing: the lock file stays behind
    holder.wait()
    assert (tmp_path / LOCK_NAME).exists()
    with OutputLock(tmp_path) as lock:
        note = lock.previous_note()
        assert note is not None and f"pid {holder.pid}" in note and "no longer running" in note
        with pytest.raises(OutputLockedError):  # and it holds: a second taker is refused
            OutputLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_NAME).exists()  # released cleanly: no lock file left
    with OutputLock(tmp_path) as lock:
        assert lock.previous_note() is None


@pytest.mark.slow
def test_interrupted_overwrite_keeps_every_old_output(tmp_path, varied_texts, head_checkpoint):
    rows, files = 80, 8
    source = make_folder(tmp_path / "in", varied_texts, rows, files=files)
    output = tmp_path / "out"
    # Outputs of an earlier run, marked so that a new version is told apart from the old.
    for job in plan_files(source, output):
        job.target.parent.mkdir(parents=True, exist_ok=True)
        pd.read_parquet(job.source).assign(preds="OLD").to_parquet(job.target)
    user_tmp = output / "a" / ".mine.tmp"
    user_tmp.write_text("user's own")
    process = cli(str(source), str(output), "--model", str(head_checkpoint), "--n-workers", "2",
                  "--batch-tokens", "128", "--autocast", "fp32", "--overwrite")
    log = []
    for line in process.stdout:  # the old CLI had deleted every old output by the time it printed this
        log.append(line)
        if line.startswith("classifying"):
            break
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGTERM)  # the CLI, its scheduler and its workers
    rest, _ = process.communicate(timeout=120)
    assert process.returncode != 0, "".join(log) + rest
    outputs = finished(output)
    assert [p.relative_to(output) for p in outputs] == [p.relative_to(source) for p in sorted(source.rglob("*.parquet"))]
    kinds = []
    for path in outputs:  # each file is the old version or the complete new one, never missing or partial
        frame = read_any(path)
        assert len(frame) == rows and frame["preds"].notna().all()
        kinds.append("old" if (frame["preds"] == "OLD").all() else "new")
    assert "old" in kinds, "the run finished before SIGTERM; make it slower"
    assert user_tmp.read_text() == "user's own"
    assert not (output / LOCK_NAME).exists()  # SIGTERM ran the cleanup: lock released
