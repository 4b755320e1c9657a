"""The observability keys of cf.properties through the real process: a bad value is refused with
its file, line and key, exit 2, before any AWS call and with no write."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"
UNREACHABLE = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("aws-log-group-retention-days=31", "aws-log-group-retention-days"),
        ("aws-alarm-email=nobody", "aws-alarm-email"),
        ("aws-alarm-heartbeat-minutes=5", "aws-alarm-heartbeat-minutes"),
    ],
)
def test_a_bad_observability_key_exits_2_naming_file_line_and_key(
    cli: Any, tmp_path: Path, line: str, key: str
) -> None:
    shutil.copyfile(SAMPLES / "cf.properties", tmp_path / "cf.properties")
    shutil.copyfile(SAMPLES / "transactor.properties", tmp_path / "transactor.properties")
    cf = tmp_path / "cf.properties"
    cf.write_text(cf.read_text(encoding="latin-1") + line + "\n", encoding="latin-1")
    number = cf.read_text(encoding="latin-1").count("\n")
    before = cf.read_bytes()
    # An unreachable endpoint: any AWS call would fail with exit 1, not 2.
    run = cli("ensure-cf", str(cf), env=UNREACHABLE)
    assert run.code == 2, (run.stdout, run.stderr)
    assert f"{cf}:{number}" in run.stderr
    assert f" {key}" in run.stderr
    assert "Traceback" not in run.stderr
    assert cf.read_bytes() == before
