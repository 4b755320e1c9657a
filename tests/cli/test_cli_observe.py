"""The observability keys of cf.properties through the real process: a bad value is refused with
its file, line and key, exit 2, before any AWS call and with no write."""

from __future__ import annotations

import json
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


def test_the_keys_survive_ensure_cf_and_reach_the_template(cli: Any, tmp_path: Path) -> None:
    """Through the loop: ensure-transactor, ensure-cf (keeps the keys; a rerun writes nothing),
    create-cf-template (the log group and the Session Manager grant are in the template)."""
    for name in ("transactor.properties", "cf.properties"):
        shutil.copyfile(SAMPLES / name, tmp_path / name)
    transactor, cf = tmp_path / "transactor.properties", tmp_path / "cf.properties"
    keys = "aws-log-group-retention-days=14\naws-session-manager=true\n"
    cf.write_text(cf.read_text(encoding="latin-1") + keys, encoding="latin-1")
    assert cli("ensure-transactor", str(transactor)).code == 0
    assert cli("ensure-cf", str(cf)).code == 0
    after = cf.read_bytes()
    assert keys.encode() in after
    again = cli("--output", "json", "ensure-cf", str(cf))
    assert again.code == 0 and again.json["changed"] is False
    assert cf.read_bytes() == after
    out = tmp_path / "cf.json"
    run = cli("create-cf-template", str(transactor), str(cf), str(out), env=UNREACHABLE)
    assert run.code == 0, run.stderr
    resources = json.loads(out.read_text(encoding="utf-8"))["Resources"]
    assert resources["LogGroup"]["Properties"]["RetentionInDays"] == 14
    assert resources["SessionManagerGrant"]["Type"] == "AWS::IAM::Policy"
