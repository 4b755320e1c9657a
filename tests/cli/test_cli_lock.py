"""Two datomic-aws processes on the same folder at once: one waits for the other."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any

from datomic_aws.config.transactor import load_transactor

from .fixtures import Proxy, command_line, start_cli

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"


def test_concurrent_runs_on_one_folder_are_serialised(
    endpoint: str, proxy: Proxy, tmp_path: Path, cli: Any
) -> None:
    """The first run's CreateTable is held (through the proxy), so it holds the folder's lock for
    as long as the test wants; the second run, started then, must wait for it, and say so."""
    path = tmp_path / "transactor.properties"
    text = (SAMPLES / "transactor.properties").read_text(encoding="latin-1")
    path.write_text(
        text.replace("# aws-s3-log-bucket-id=", "aws-s3-log-bucket-id="), encoding="latin-1"
    )

    def start(url: str) -> subprocess.Popen[str]:
        return start_cli(url, "--output", "json", "ensure-transactor", str(path))

    proxy.held_operations.add("CreateTable")
    first = start(proxy.url)
    procs = [first]
    try:
        assert proxy.wait_held("CreateTable", timeout=120), proxy.log
        second = start(endpoint)
        procs.append(second)
        waiting = _line_with(second, "waiting for another datomic-aws run", timeout=120)
        assert f"(pid {first.pid})" in waiting, waiting
        assert second.poll() is None  # still waiting: the first holds the folder
        proxy.held_operations.clear()
        proxy.release()  # the held attempt is dropped; botocore sends it again
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "waiting for another datomic-aws run" not in outs[0][1]
    # The file is whole and converged; a third run finds nothing to do.
    _, spec = load_transactor(path)
    assert spec.transactor_role == "datomic-my-datomic-system-transactor"
    again = cli("--output", "json", "ensure-transactor", str(path))
    assert again.json["changed"] is False
    # The roles exist once: the second run found what the first created.
    assert sum(1 for o, _ in outs if '"action": "create"' in o) == 1


def _line_with(proc: subprocess.Popen[str], text: str, timeout: float) -> str:
    """The first stderr line of `proc` that holds `text` (read in a thread: never hangs)."""
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stderr is not None
        for line in iter(proc.stderr.readline, ""):
            if text in line:
                found.put(line)
                return

    threading.Thread(target=read, daemon=True).start()
    return found.get(timeout=timeout)


def test_lock_timeout_zero_refuses_at_once(endpoint: str, tmp_path: Path) -> None:
    import fcntl

    path = tmp_path / "transactor.properties"
    path.write_bytes((SAMPLES / "transactor.properties").read_bytes())
    with open(tmp_path / ".datomic-aws.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        run = subprocess.run(
            [*command_line(), "--lock-timeout", "0", "ensure-transactor", str(path)],
            capture_output=True,
            text=True,
            env={**os.environ, "AWS_ENDPOINT_URL": endpoint},
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
    assert run.returncode == 1
    assert "another datomic-aws run (pid 4242)" in run.stderr
    assert path.read_bytes() == (SAMPLES / "transactor.properties").read_bytes()
