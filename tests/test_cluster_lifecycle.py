"""get_client: a script without a ``__main__`` guard is told what to add (issue 15 item 9),
and closing a cluster lets workers exit by themselves (issue 16 dask item 3)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import dask.dataframe as dd
import pandas as pd

from nemo_cls_dask import DistributedDataClassifier, get_client
from nemo_cls_dask.cluster import close_client

SCRIPT = """
import pandas as pd
from nemo_cls_dask import get_client
{body}
"""


def _run_script(tmp_path, body: str) -> subprocess.CompletedProcess:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT.format(body=textwrap.dedent(body)))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)


def test_script_without_main_guard_is_told_what_to_add(tmp_path):
    done = _run_script(tmp_path, """
        def main():
            client = get_client(n_workers=1)
            print("started")
        main()
    """)
    assert done.returncode != 0 and "started" not in done.stdout
    assert 'outside `if __name__ == "__main__":`' in done.stderr and "job.py" in done.stderr and "line 8" in done.stderr
    assert "Nanny failed to start" not in done.stderr and len(done.stderr.splitlines()) < 30


def test_script_with_main_guard_starts_its_cluster(tmp_path):
    done = _run_script(tmp_path, """
        if __name__ == "__main__":
            from nemo_cls_dask.cluster import close_client
            client = get_client(n_workers=1)
            print("workers:", len(client.scheduler_info()["workers"]))
            close_client(client)
    """)
    assert done.returncode == 0, done.stderr
    assert "workers: 1" in done.stdout


def test_closing_a_cluster_lets_workers_exit_without_being_killed(caplog, head_checkpoint):
    caplog.set_level(logging.INFO, logger="distributed")
    client = get_client(n_workers=2)
    try:
        frame = dd.from_pandas(pd.DataFrame({"text": ["some text", "more text"] * 4}), npartitions=2)
        out = DistributedDataClassifier(model_identifier=head_checkpoint)(frame).compute()
        assert out["preds"].notna().all()  # both workers loaded torch and the model
    finally:
        close_client(client)
    messages = [record.getMessage() for record in caplog.records]
    assert any("Nanny asking worker to close" in m for m in messages)  # the logs were captured
    assert not [m for m in messages if "still alive" in m or "killed by signal" in m]
