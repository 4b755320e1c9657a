"""ensure-transactor with a configuration key of the tool's own (aws-ssm-kms-key=managed, issue 11
Deliver 5), through the real process against a moto server: the first run creates the key before
the parameter, a rerun changes nothing and decrypts nothing, a dry run plans the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"
SYSTEM = "my-datomic-system"
ALIAS = f"alias/datomic-aws/{SYSTEM}"
PARAMETER = f"/datomic/{SYSTEM}/transactor.properties"


def _file(tmp_path: Path) -> Path:
    text = (SAMPLES / "transactor.properties").read_text(encoding="latin-1")
    path = tmp_path / "transactor.properties"
    path.write_text(text + "aws-ssm-kms-key=managed\n", encoding="latin-1")
    return path


def test_a_managed_key_first_run_creates_rerun_and_dry_run_change_nothing(
    cli: Any, boto: Any, tmp_path: Path
) -> None:
    path = _file(tmp_path)
    first = cli("--output", "json", "ensure-transactor", str(path))
    assert first.code == 0, first.stderr
    actions = {c["resource"]: c["action"] for c in first.json["changes"]}
    assert actions[f"kms key {ALIAS}"] == "create"
    assert actions[f"ssm parameter {PARAMETER}"] == "create"
    calls = first.json["aws_calls"]["by_operation"]
    assert calls["kms:CreateKey"] == 1 and calls["kms:CreateAlias"] == 1
    kms = boto("kms")
    key = kms.describe_key(KeyId=ALIAS)["KeyMetadata"]
    policy = json.loads(kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"])
    readers = [s for s in policy["Statement"] if "kms:Decrypt" in s["Action"]]
    assert [r["Principal"] for r in readers] == [
        {"AWS": f"arn:aws:iam::123456789012:role/datomic-{SYSTEM}-transactor"}
    ]
    (meta,) = boto("ssm").describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [PARAMETER]}]
    )["Parameters"]
    assert meta["KeyId"] == ALIAS

    before = path.read_bytes()
    again = cli("--output", "json", "ensure-transactor", str(path))
    assert again.code == 0, again.stderr
    doc = again.json
    assert doc["changed"] is False
    assert {c["action"] for c in doc["changes"]} == {"noop"}
    assert doc["aws_calls"]["mutating"] == 0, doc["aws_calls"]
    assert path.read_bytes() == before
    # Decided without decrypting the configuration.
    assert "ssm:GetParameter" not in doc["aws_calls"]["by_operation"]

    dry = cli("--output", "json", "ensure-transactor", "--dry-run", str(path))
    assert dry.code == 0, dry.stderr
    assert dry.json["changes"] == doc["changes"]
    assert dry.json["aws_calls"] == doc["aws_calls"]
    assert path.read_bytes() == before

    text = cli("ensure-transactor", "--dry-run", str(path))
    assert text.code == 0, text.stderr
    assert f"= noop   kms key {ALIAS}" in text.stdout
