"""fsspec URLs for inputs and outputs (issue 16, "Storage").

Which cluster each test uses, and why:

* ``memory://`` is a store inside one Python process, so a worker *process* cannot see the
  client's files. Its tests use a real ``distributed`` ``LocalCluster(processes=False)``
  (scheduler and worker in this process, talking over dask's ``inproc://`` transport).
* ``file://`` is the local disk under another name: its tests use a real ``LocalCluster``
  with a worker process, the CLI joining it with ``--scheduler``.
* Errors that must come before a cluster starts run with cluster start-up patched to fail.
* Reader, lock, writer-failure and train tests need no cluster: they run in this process
  (dask's synchronous or threaded scheduler), which sees memory://.
* The cluster fixtures are per test, and no test takes both: one cluster at a time.

Float columns are compared exactly: the URL and the plain-path run of a test use the same
cluster, the same fp32 model and the same partitions, so the same arithmetic.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import socket
import subprocess
import sys
import uuid

import dask
import fsspec
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from fsspec.implementations.memory import MemoryFileSystem

from nemo_cls_dask import DistributedDataClassifier, InputError, classify_files
from nemo_cls_dask.cli import main
from nemo_cls_dask.io import read_frame
from nemo_cls_dask.manifest import MANIFEST_NAME
from nemo_cls_dask.output_folder import LOCK_NAME, OutputError, OutputLockedError, RemoteOutputLock
from nemo_cls_dask.report import write_run_report
from nemo_cls_dask.storage import StoragePath, location

from test_cli import finished, make_folder

MEMORY = fsspec.filesystem("memory")


@pytest.fixture
def process_client():
    """A real cluster with one worker process (for file:// and for refusing memory://)."""
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client


@pytest.fixture
def inprocess_client():
    """A real cluster whose scheduler and worker run in this process: they see memory://."""
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client


@pytest.fixture
def memory_root():
    """A fresh folder on the process-wide memory:// store, removed after the test."""
    root = f"/test-{uuid.uuid4().hex[:8]}"
    yield root
    if MEMORY.exists(root):
        MEMORY.rm(root, recursive=True)


@pytest.fixture
def no_cluster(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr("nemo_cls_dask.cluster.get_client", refuse)


def _classifier(checkpoint, **kwargs):
    return DistributedDataClassifier(model_identifier=checkpoint, autocast=False, **kwargs)


def _read(path) -> pd.DataFrame:
    """One output file, local or on memory://, as pandas."""
    with location(path).open("rb") as handle:
        data = handle.read()
    if str(path).endswith(".jsonl"):
        return pd.read_json(io.BytesIO(data), lines=True, dtype=False)
    return pd.read_parquet(io.BytesIO(data))


def _memory_outputs(root: str) -> list[str]:
    """Relative names of finished outputs under a memory:// folder (no temporaries, lock, manifest)."""
    names = [path[len(root) + 1:] for path in MEMORY.find(root)]
    return sorted(name for name in names if not name.split("/")[-1].startswith((".", "_")))


# --------------------------------------------------------------------------- memory:// (in-process cluster)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_memory_folder_gives_the_same_rows_as_the_local_run(fmt, tmp_path, memory_root, varied_texts, head_checkpoint,
                                                             inprocess_client):
    """classify_files on memory:// in and out equals the plain-path run, row for row, in both formats."""
    local_in = make_folder(tmp_path / "in", varied_texts, 7, fmt=fmt, files=3)
    MEMORY.put(str(local_in), f"{memory_root}/in", recursive=True)
    classifier = _classifier(head_checkpoint, score_field="probs")

    local = classify_files(local_in, tmp_path / "out", classifier, client=inprocess_client)
    remote = classify_files(f"memory://{memory_root}/in", f"memory://{memory_root}/out", classifier, client=inprocess_client)

    names = [p.relative_to(tmp_path / "out").as_posix() for p in finished(tmp_path / "out")]
    assert names == _memory_outputs(f"{memory_root}/out") and len(names) == 3
    assert remote.ok and remote.rows == local.rows == 21 and remote.label_counts == local.label_counts
    assert all(isinstance(outcome.target, StoragePath) for outcome in remote.files)
    for name in names:
        expected = _read(tmp_path / "out" / name)
        got = _read(f"memory://{memory_root}/out/{name}")
        pd.testing.assert_frame_equal(got, expected)  # exact: same cluster, same fp32 arithmetic
    assert MEMORY.exists(f"{memory_root}/out/{MANIFEST_NAME}")
    assert not MEMORY.exists(f"{memory_root}/out/{LOCK_NAME}")  # released
    # The HTML report reads the outputs from the store too.
    page = write_run_report(remote, tmp_path / "report.html", label_field="preds", score_field="probs")
    assert "Classification report" in page.read_text()


def test_resume_on_memory_skips_complete_outputs_and_removes_only_own_temporaries(
        tmp_path, memory_root, varied_texts, head_checkpoint, inprocess_client):
    """A run killed mid-way (one output missing, its writer's temporary left) is finished by a rerun."""
    local_in = make_folder(tmp_path / "in", varied_texts, 5, files=4)
    MEMORY.put(str(local_in), f"{memory_root}/in", recursive=True)
    source, output = f"memory://{memory_root}/in", f"memory://{memory_root}/out"
    classifier = _classifier(head_checkpoint)
    first = classify_files(source, output, classifier, client=inprocess_client)
    assert len(first.written) == 4
    complete = {name: MEMORY.cat_file(f"{memory_root}/out/{name}") for name in _memory_outputs(f"{memory_root}/out")}

    # What a crash leaves: b/part-2 never got its final name; its writer's temporary key stays.
    MEMORY.rm_file(f"{memory_root}/out/b/part-2.parquet")
    ours = f"{memory_root}/out/b/.part-2.parquet.0123456789ab.tmp"
    MEMORY.pipe_file(ours, b"PAR1 half an upload")
    users = [f"{memory_root}/out/b/.part-2.parquet.tmp", f"{memory_root}/out/b/.part-99.parquet.0123456789ab.tmp",
             f"{memory_root}/out/notes.txt"]
    for key in users:
        MEMORY.pipe_file(key, b"the user's own")
    kept = f"{memory_root}/out/a/part-1.parquet"
    MEMORY.pipe_file(kept, b"changed by hand")  # a complete output is never read nor rewritten by a resume

    lines: list[str] = []
    again = classify_files(source, output, classifier, client=inprocess_client, echo=lines.append)
    assert [o.target.name for o in again.files if o.status == "written"] == ["part-2.parquet"]
    assert len(again.skipped) == 3 and again.ok
    assert [str(p) for p in again.removed_temporaries] == [f"memory://{ours}"]
    assert not MEMORY.exists(ours) and all(MEMORY.cat_file(key) == b"the user's own" for key in users)
    assert MEMORY.cat_file(kept) == b"changed by hand"
    del complete["a/part-1.parquet"]
    assert {name: MEMORY.cat_file(f"{memory_root}/out/{name}") for name in complete} == complete  # same bytes again
    assert any("removed 1 unfinished temporary" in line for line in lines)


def test_memory_output_with_foreign_files_is_refused_without_overwrite(tmp_path, memory_root, varied_texts, head_checkpoint,
                                                                      inprocess_client):
    """Outputs with no record of their settings are never replaced unless overwrite is asked for."""
    local_in = make_folder(tmp_path / "in", varied_texts, 3, files=2)
    MEMORY.put(str(local_in), f"{memory_root}/in", recursive=True)
    foreign = f"{memory_root}/out/a/part-1.parquet"
    pd.DataFrame({"text": ["someone else's"]}).to_parquet(buffer := io.BytesIO())
    MEMORY.pipe_file(foreign, buffer.getvalue())
    source, output = f"memory://{memory_root}/in", f"memory://{memory_root}/out"
    with pytest.raises(InputError, match="--overwrite"):
        classify_files(source, output, _classifier(head_checkpoint), client=inprocess_client)
    assert MEMORY.cat_file(foreign) == buffer.getvalue() and _memory_outputs(f"{memory_root}/out") == ["a/part-1.parquet"]
    assert not MEMORY.exists(f"{memory_root}/out/{LOCK_NAME}")

    redone = classify_files(source, output, _classifier(head_checkpoint), client=inprocess_client, overwrite=True)
    assert len(redone.written) == 2 and "preds" in _read(f"memory://{foreign}").columns

    MEMORY.pipe_file(f"{memory_root}/file-out", b"a file")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        classify_files(source, f"memory://{memory_root}/file-out", _classifier(head_checkpoint), client=inprocess_client)
    assert MEMORY.cat_file(f"{memory_root}/file-out") == b"a file"
    with pytest.raises(OutputError, match="overlaps the input"):
        classify_files(source, f"memory://{memory_root}/in/sub", _classifier(head_checkpoint), client=inprocess_client)


def test_cli_on_memory_joins_an_inprocess_scheduler(tmp_path, memory_root, varied_texts, head_checkpoint, inprocess_client,
                                                    capsys):
    """The classify command with memory:// paths and --scheduler of a cluster in this process."""
    local_in = make_folder(tmp_path / "in", varied_texts, 4, files=2)
    MEMORY.put(str(local_in), f"{memory_root}/in", recursive=True)
    args = ["classify", f"memory://{memory_root}/in", f"memory://{memory_root}/out", "--model", str(head_checkpoint),
            "--autocast", "fp32", "--format", "jsonl", "--scheduler", inprocess_client.scheduler.address]
    assert main(args) == 0
    assert "2 written, 0 skipped" in capsys.readouterr().out
    assert _memory_outputs(f"{memory_root}/out") == ["a/part-1.jsonl", "b/part-0.jsonl"]
    assert main(args) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_memory_is_refused_where_workers_cannot_see_it(tmp_path, memory_root, varied_texts, head_checkpoint, process_client,
                                                       no_cluster):
    """memory:// with a new cluster (worker processes): refused before it starts; with a given one: before any work."""
    local_in = make_folder(tmp_path / "in", varied_texts, 2, files=1)
    MEMORY.put(str(local_in), f"{memory_root}/in", recursive=True)
    with pytest.raises(InputError, match="processes=False"):
        classify_files(f"memory://{memory_root}/in", tmp_path / "out", _classifier(head_checkpoint))
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="other processes"):
        classify_files(f"memory://{memory_root}/in", f"memory://{memory_root}/out", _classifier(head_checkpoint),
                       client=process_client)
    assert not MEMORY.exists(f"{memory_root}/out")  # refused before the folder, lock or manifest was made


def test_remote_lock_is_advisory_and_taken_over_only_from_a_dead_local_run(memory_root):
    folder = location(f"memory://{memory_root}/out")
    with RemoteOutputLock(folder, command="first") as first:
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()}.*first.*delete memory://{memory_root}/out/{LOCK_NAME}"):
            RemoteOutputLock(folder).acquire()  # a live holder: refused
        assert first.previous_note() is None
    assert not MEMORY.exists(f"{memory_root}/out/{LOCK_NAME}")

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead = {"pid": int(gone.stdout), "host": socket.gethostname(), "started": "earlier", "command": "killed", "token": "x"}
    MEMORY.pipe_file(f"{memory_root}/out/{LOCK_NAME}", json.dumps(dead).encode())
    with RemoteOutputLock(folder) as lock:
        assert f"pid {dead['pid']}" in lock.previous_note()
    assert not MEMORY.exists(f"{memory_root}/out/{LOCK_NAME}")

    elsewhere = dict(dead, host="another-machine")
    MEMORY.pipe_file(f"{memory_root}/out/{LOCK_NAME}", json.dumps(elsewhere).encode())
    with pytest.raises(OutputLockedError, match="another-machine.*advisory"):
        RemoteOutputLock(folder).acquire()
    assert json.loads(MEMORY.cat_file(f"{memory_root}/out/{LOCK_NAME}")) == elsewhere  # left for the user to remove


def test_readers_take_memory_urls(tmp_path, memory_root, varied_texts):
    """read_frame on memory:// gives the same frame as on the local copy, for every input format.

    Read and computed with dask's synchronous scheduler (in this process: it sees memory://;
    dask's jsonl reader computes its first block while building the graph).
    """
    frame = pd.DataFrame({"text": varied_texts[:9], "doc": [str(i) for i in range(9)]})
    frame.to_json(tmp_path / "x.jsonl.gz", orient="records", lines=True, compression="gzip")
    frame.to_csv(tmp_path / "x.tsv", sep="\t", index=False)
    frame.to_parquet(tmp_path / "x.parquet")
    for name in ("x.jsonl.gz", "x.tsv", "x.parquet"):
        MEMORY.put(str(tmp_path / name), f"{memory_root}/{name}")
        with dask.config.set(scheduler="sync"):
            local = read_frame(tmp_path / name).compute()
            remote = read_frame(f"memory://{memory_root}/{name}").compute()
        pd.testing.assert_frame_equal(remote, local)


class _TokenMemory(MemoryFileSystem):
    """A memory store that refuses every call made without ``token="secret"``: proves options arrive."""

    protocol = ("tokenmem",)
    root_marker = "/"

    def __init__(self, token: str | None = None, **kwargs):
        if token != "secret":
            raise PermissionError(f"tokenmem: bad token {token!r}")
        super().__init__(**kwargs)

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol("memory://" + path[len("tokenmem://"):] if path.startswith("tokenmem://") else path)


fsspec.register_implementation("tokenmem", _TokenMemory, clobber=True)


def test_storage_options_reach_reader_and_writer(tmp_path, memory_root, varied_texts, head_checkpoint, inprocess_client,
                                                 capsys):
    local_in = make_folder(tmp_path / "in", varied_texts, 3, files=2)
    MEMORY.put(str(local_in), f"{memory_root}/in", recursive=True)  # tokenmem shares memory://'s store
    source, output = f"tokenmem://{memory_root}/in", f"tokenmem://{memory_root}/out"
    with pytest.raises(InputError, match="Cannot open the tokenmem:// filesystem: PermissionError: tokenmem: bad token None"):
        classify_files(source, output, _classifier(head_checkpoint), client=inprocess_client)
    args = ["classify", source, output, "--model", str(head_checkpoint), "--scheduler", inprocess_client.scheduler.address,
            "--storage-option", "token=secret"]
    assert main(args) == 0 and "2 written" in capsys.readouterr().out
    assert _memory_outputs(f"{memory_root}/out") == ["a/part-1.parquet", "b/part-0.parquet"]
    with pytest.raises(InputError, match="not to the local path"):
        classify_files(local_in, tmp_path / "out", _classifier(head_checkpoint), storage_options={"token": "secret"})
    # A local input and a store's output: the options go to the store only.
    mixed = classify_files(local_in, f"tokenmem://{memory_root}/mixed", _classifier(head_checkpoint),
                           client=inprocess_client, storage_options={"token": "secret"})
    assert len(mixed.written) == 2 and _memory_outputs(f"{memory_root}/mixed") == ["a/part-1.parquet", "b/part-0.parquet"]


# --------------------------------------------------------------------------- file:// (process cluster)


def test_file_urls_on_a_process_cluster_match_plain_paths(tmp_path, varied_texts, head_checkpoint, process_client, capsys):
    """CLI and classify_files with file:// URLs write what plain paths write, on a worker process."""
    source = make_folder(tmp_path / "in", varied_texts, 6, files=3)
    common = ["--model", str(head_checkpoint), "--autocast", "fp32", "--scheduler", process_client.scheduler.address]
    assert main(["classify", str(source), str(tmp_path / "plain"), *common]) == 0
    assert main(["classify", f"file://{source}", f"file://{tmp_path / 'url'}", *common]) == 0
    capsys.readouterr()
    library = classify_files(f"file://{source}", f"file://{tmp_path / 'lib'}", _classifier(head_checkpoint), client=process_client)
    assert library.ok and library.output == tmp_path / "lib"  # a file:// URL is a local Path again
    plain = finished(tmp_path / "plain")
    assert len(plain) == 3
    for path in plain:
        relative = path.relative_to(tmp_path / "plain")
        expected = pd.read_parquet(path)
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "url" / relative), expected)
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "lib" / relative), expected)


# --------------------------------------------------------------------------- clear errors, before any cluster


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed here")
def test_s3_without_s3fs_names_the_package_before_a_cluster(tmp_path, head_checkpoint, no_cluster, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"s3:// paths need the s3fs package.*pip install s3fs"):
        classify_files("s3://bucket/in", tmp_path / "out", _classifier(head_checkpoint))
    assert main(["classify", "s3://bucket/in", "s3://bucket/out", "--model", str(head_checkpoint)]) == 2
    assert "pip install s3fs" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no local folder named "s3:" or "out"


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed here")
def test_gs_without_gcsfs_and_unknown_protocols_are_named(tmp_path, head_checkpoint, no_cluster):
    with pytest.raises(InputError, match="gcsfs"):
        read_frame("gs://bucket/x.parquet")
    with pytest.raises(InputError, match="Unknown storage protocol 'nosuch'"):
        classify_files(tmp_path, "nosuch://bucket/out", _classifier(head_checkpoint))


def test_model_folders_stay_local(tmp_path, memory_root, varied_texts, capsys, monkeypatch):
    """train/distill read URL inputs, but model folders and reports must be local (not a folder named 's3:')."""
    pool = tmp_path / "pool.jsonl"
    pd.DataFrame({"text": varied_texts[:4], "label": ["a", "b"] * 2}).to_json(pool, orient="records", lines=True)
    MEMORY.put(str(pool), f"{memory_root}/pool.jsonl")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["train", f"memory://{memory_root}/pool.jsonl", "--out", "s3://bucket/model"]) == 2
    assert "--out must be a local path" in capsys.readouterr().err
    assert main(["distill", f"file://{pool}", "gs://bucket/student", "--teacher", "debian-topics"]) == 2
    assert "MODEL_OUT must be a local path" in capsys.readouterr().err
    assert main(["classify", f"file://{pool}", "out", "--report", "s3://bucket/run.html"]) == 2
    assert "Report path must be a local path" in capsys.readouterr().err
    assert main(["distill", f"memory://{memory_root}/pool.jsonl", "student", "--teacher", "debian-topics"]) == 2
    assert "worker processes" in capsys.readouterr().err  # distill's own cluster could not read memory://
    assert list(work.iterdir()) == []


def test_train_reads_memory_urls_like_local_files(tmp_path, memory_root, capsys):
    """train from memory:// (parquet data, jsonl validation) saves the model the local-path run saves.

    No cluster: training computes with dask's threads in this process, which see memory://.
    Probabilities agree to 1e-6: same data, seed and batches in one process; the tolerance only
    allows for reductions whose order torch does not fix.
    """
    import numpy as np

    from nemo_cls_dask.testing import make_backbone_checkpoint

    backbone = make_backbone_checkpoint(tmp_path / "backbone")
    rows = pd.DataFrame({"body": [f"the {w} and {w}" for w in ["apple", "pear"] * 30], "kind": ["a", "b"] * 30})
    rows.to_parquet(tmp_path / "train.parquet")
    rows.iloc[:10].to_json(tmp_path / "valid.jsonl", orient="records", lines=True)
    for name in ("train.parquet", "valid.jsonl"):
        MEMORY.put(str(tmp_path / name), f"{memory_root}/{name}")
    common = ["--text-field", "body", "--label-field", "kind", "--backbone", str(backbone), "--frozen-backbone",
              "--epochs", "2", "--lr", "1e-2", "--in-memory", "--quiet", "--max-len", "16"]
    assert main(["train", str(tmp_path / "train.parquet"), "--validation", str(tmp_path / "valid.jsonl"),
                 "--out", str(tmp_path / "local"), *common]) == 0
    assert main(["train", f"memory://{memory_root}/train.parquet", "--validation", f"memory://{memory_root}/valid.jsonl",
                 "--out", f"file://{tmp_path / 'remote'}", *common]) == 0
    capsys.readouterr()
    texts = pd.DataFrame({"body": ["the apple and apple", "the pear and pear", "and the"]})
    local, remote = (DistributedDataClassifier(model_identifier=tmp_path / name, text_field="body", score_field="p")(texts)
                     for name in ("local", "remote"))
    assert local["preds"].tolist() == remote["preds"].tolist()
    np.testing.assert_allclose(np.stack(remote["p"]), np.stack(local["p"]), atol=1e-6)


def test_paths_and_storage_option_flags_parse_as_meant():
    from nemo_cls_dask.cli import build_parser
    from nemo_cls_dask.cli.options import storage_options

    assert location("data/a://b") == location("data/a://b") and not isinstance(location("data/a://b"), StoragePath)
    assert str(location("file:///tmp/x")) == "/tmp/x" and str(location("memory://x/y")) == "memory:///x/y"
    path = location("memory://root") / "a/./b" / "c.parquet"
    assert str(path) == "memory:///root/a/b/c.parquet" and path.parent.name == "b" and path.suffix == ".parquet"
    args = build_parser(["classify"]).parse_args(
        ["classify", "in", "out", "--storage-option", "anon=true", "--storage-option", "profile=prod",
         "--storage-option", 'client_kwargs={"region_name": "eu-west-1"}', "--storage-option", "key=a=b"])
    assert storage_options(args) == {"anon": True, "profile": "prod", "client_kwargs": {"region_name": "eu-west-1"}, "key": "a=b"}
    assert storage_options(build_parser(["classify"]).parse_args(["classify"])) is None
    with pytest.raises(SystemExit):
        build_parser(["classify"]).parse_args(["classify", "--storage-option", "no-equals-sign"])


def test_a_failed_upload_leaves_the_old_object_and_no_temporary(memory_root, monkeypatch):
    """The copy to the final name fails (a network error): the old output stays whole, the temporary key goes."""
    from nemo_cls_dask.io import write_atomic

    target = location(f"memory://{memory_root}/out/a.parquet")
    MEMORY.pipe_file(target.path, b"the old, complete output")

    def broken_copy(self, source, destination, **kwargs):
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(MemoryFileSystem, "cp_file", broken_copy)
    with pytest.raises(OutputError, match=f"Cannot write {target}"):
        write_atomic(pd.DataFrame({"text": ["new"]}), target, "parquet")
    assert MEMORY.cat_file(target.path) == b"the old, complete output"
    assert MEMORY.find(f"{memory_root}/out") == [target.path]  # no temporary key left behind
    monkeypatch.undo()
    write_atomic(pd.DataFrame({"text": ["new"]}), target, "parquet")
    assert _read(target)["text"].tolist() == ["new"] and MEMORY.find(f"{memory_root}/out") == [target.path]


def test_any_missing_filesystem_package_is_named(tmp_path, head_checkpoint, no_cluster):
    """Runs whatever is installed: a protocol whose fsspec class lives in a package that is not there."""
    fsspec.register_implementation("nopkg", "nemo_no_such_fs_package.NoFileSystem", clobber=True,
                                   errtxt="Install nemo_no_such_fs_package to access nopkg://")
    with pytest.raises(InputError, match=r"nopkg:// paths need the nemo_no_such_fs_package package.*pip install nemo_no_such_fs_package"):
        classify_files("nopkg://bucket/in", tmp_path / "out", _classifier(head_checkpoint))
    assert not (tmp_path / "out").exists()


def test_a_held_remote_lock_stops_a_second_run_before_any_work(tmp_path, memory_root, varied_texts, head_checkpoint,
                                                              inprocess_client):
    local_in = make_folder(tmp_path / "in", varied_texts, 2, files=2)
    MEMORY.put(str(local_in), f"{memory_root}/in", recursive=True)
    output = location(f"memory://{memory_root}/out")
    with RemoteOutputLock(output, command="nemo-cls-dask classify first-run"):
        with pytest.raises(OutputLockedError, match="first-run"):
            classify_files(f"memory://{memory_root}/in", output, _classifier(head_checkpoint), client=inprocess_client)
        assert _memory_outputs(f"{memory_root}/out") == [] and not MEMORY.exists(f"{memory_root}/out/{MANIFEST_NAME}")
    done = classify_files(f"memory://{memory_root}/in", output, _classifier(head_checkpoint), client=inprocess_client)
    assert len(done.written) == 2 and not done.notes  # a released lock is no takeover


class _DeniedMemory(MemoryFileSystem):
    """A store that refuses every look-up, as a bucket without read permission does."""

    protocol = ("deniedmem",)

    def info(self, path, **kwargs):
        raise PermissionError(f"access denied: {path}")

    def exists(self, path, **kwargs):
        return bool(self.info(path))


fsspec.register_implementation("deniedmem", _DeniedMemory, clobber=True)


def test_store_errors_are_named_before_a_cluster(tmp_path, varied_texts, head_checkpoint, no_cluster):
    local_in = make_folder(tmp_path / "in", varied_texts, 2, files=1)
    with pytest.raises(InputError, match="Cannot list the input deniedmem://.*PermissionError: access denied"):
        read_frame("deniedmem://bucket/in")
    with pytest.raises(OutputError, match="Cannot access the output deniedmem://.*PermissionError: access denied"):
        classify_files(local_in, "deniedmem://bucket/out", _classifier(head_checkpoint))
