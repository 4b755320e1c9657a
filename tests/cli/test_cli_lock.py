"""Two datomic-aws processes on the same folder at once: one waits for the other."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from datomic_aws.config.transactor import load_transactor

from .fixtures import command_line

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"


def test_concurrent_runs_on_one_folder_are_serialised(
    endpoint: str, tmp_path: Path, cli: Any
) -> None:
    path = tmp_path / "transactor.properties"
    text = (SAMPLES / "transactor.properties").read_text(encoding="latin-1")
    path.write_text(
        text.replace("# aws-s3-log-bucket-id=", "aws-s3-log-bucket-id="), encoding="latin-1"
    )
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    procs = [
        subprocess.Popen(
            [*command_line(), "--output", "json", "ensure-transactor", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    waited = [err for _, err in outs if "waiting for another datomic-aws run" in err]
    assert len(waited) == 1, [err for _, err in outs]
    # The file is whole and converged; a third run finds nothing to do.
    _, spec = load_transactor(path)
    assert spec.transactor_role == "datomic-my-datomic-system-transactor"
    again = cli("--output", "json", "ensure-transactor", str(path))
    assert again.json["changed"] is False
    # The roles exist once: the second run found what the first created.
    assert sum(1 for o, _ in outs if '"action": "create"' in o) == 1


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
