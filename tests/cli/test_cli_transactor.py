"""ensure-transactor through the real process, against a moto server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"
SECRET = "Sup3r-s3cret-pw-93x"


def _sample(tmp_path: Path, name: str = "transactor.properties", **edits: str) -> Path:
    text = (SAMPLES / name).read_text(encoding="latin-1")
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text, encoding="latin-1")
    return path


def _ddb(tmp_path: Path) -> Path:
    return _sample(tmp_path, **{"# aws-s3-log-bucket-id=": "aws-s3-log-bucket-id="})


def test_first_run_creates_and_writes_back_then_rerun_is_a_noop(
    cli: Any, boto: Any, tmp_path: Path
) -> None:
    path = _ddb(tmp_path)
    first = cli("--output", "json", "ensure-transactor", str(path))
    assert first.code == 0, first.stderr
    doc = first.json
    assert doc["command"] == "ensure-transactor"
    actions = {c["resource"]: c["action"] for c in doc["changes"]}
    assert actions == {
        "dynamodb table my-datomic-system": "create",
        "s3 bucket datomic-my-datomic-system-logs-123456789012-us-east-1": "create",
        "iam role datomic-my-datomic-system-transactor": "create",
        "iam role datomic-my-datomic-system-peer": "create",
        "ssm parameter /datomic/my-datomic-system/transactor.properties": "create",
    }
    assert doc["files"][0]["written"] is True
    text = path.read_text(encoding="latin-1")
    assert "aws-transactor-role=datomic-my-datomic-system-transactor\n" in text
    assert "aws-peer-role=datomic-my-datomic-system-peer\n" in text
    assert boto("dynamodb").describe_table(TableName="my-datomic-system")["Table"]
    profile = boto("iam").get_instance_profile(
        InstanceProfileName="datomic-my-datomic-system-transactor"
    )["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == ["datomic-my-datomic-system-transactor"]

    before = path.read_bytes()
    stat = os.stat(path)
    second = cli("--output", "json", "ensure-transactor", str(path))
    assert second.code == 0, second.stderr
    doc = second.json
    assert doc["changed"] is False
    assert {c["action"] for c in doc["changes"]} == {"noop"}
    assert doc["aws_calls"]["mutating"] == 0, doc["aws_calls"]
    assert doc["aws_calls"]["total"] <= 20, doc["aws_calls"]
    assert path.read_bytes() == before
    assert os.stat(path).st_mtime_ns == stat.st_mtime_ns
    assert doc["files"][0] == {"path": str(path), "changed": False, "written": False, "diff": ""}


def test_text_output_reports_changes_and_the_diff(cli: Any, tmp_path: Path) -> None:
    path = _ddb(tmp_path)
    run = cli("ensure-transactor", str(path))
    assert run.code == 0, run.stderr
    assert "+ create dynamodb table my-datomic-system" in run.stdout
    assert "+aws-transactor-role=datomic-my-datomic-system-transactor" in run.stdout
    assert "Changes: 5 created, 0 unchanged, 1 file(s) rewritten." in run.stdout
    again = cli("ensure-transactor", str(path))
    assert "No changes. 5 unchanged." in again.stdout


def test_output_file_leaves_input_untouched(cli: Any, tmp_path: Path) -> None:
    path = _ddb(tmp_path)
    before = path.read_bytes()
    out = tmp_path / "out.properties"
    run = cli("ensure-transactor", str(path), str(out))
    assert run.code == 0, run.stderr
    assert path.read_bytes() == before
    assert "aws-peer-role=datomic-my-datomic-system-peer" in out.read_text(encoding="latin-1")


def test_dry_run_plans_without_writing_and_detailed_exitcode(
    cli: Any, boto: Any, tmp_path: Path
) -> None:
    path = _ddb(tmp_path)
    before = path.read_bytes()
    plan = cli(
        "--output", "json", "ensure-transactor", "--dry-run", "--detailed-exitcode", str(path)
    )
    assert plan.code == 3, plan.stderr
    doc = plan.json
    assert doc["dry_run"] is True
    assert doc["aws_calls"]["mutating"] == 0
    assert {c["action"] for c in doc["changes"]} == {"create"}
    assert "+aws-transactor-role=datomic-my-datomic-system-transactor" in doc["files"][0]["diff"]
    assert path.read_bytes() == before
    assert boto("dynamodb").list_tables()["TableNames"] == []
    assert boto("iam").list_roles()["Roles"] == []

    assert cli("ensure-transactor", str(path)).code == 0
    settled = cli("ensure-transactor", "--dry-run", "--detailed-exitcode", str(path))
    assert settled.code == 0, settled.stderr


def test_detailed_exitcode_needs_dry_run(cli: Any, tmp_path: Path) -> None:
    run = cli("ensure-transactor", "--detailed-exitcode", str(_ddb(tmp_path)))
    assert run.code == 2
    assert "Error: --detailed-exitcode needs --dry-run" in run.stderr


@pytest.mark.parametrize(
    ("edits", "key"),
    [
        ({"protocol=ddb": "protocol=free"}, "protocol"),
        ({"port=4334": "port=43x4"}, "port"),
        ({"aws-dynamodb-region=us-east-1": "aws-dynamodb-region=mars"}, "aws-dynamodb-region"),
        ({"aws-dynamodb-table=my-datomic-system": "aws-dynamodb-table="}, "aws-dynamodb-table"),
        ({"memory-index-max=512m": "memory-index-max=lots"}, "memory-index-max"),
        ({"aws-peer-role=": "aws-peer-role=bad role"}, "aws-peer-role"),
        (
            {"port=4334": "port=4334\naws-dynamodb-secret-key=AKIAEXAMPLE"},
            "aws-dynamodb-secret-key",
        ),
    ],
)
def test_invalid_input_exits_2_before_any_aws_call(
    cli: Any, tmp_path: Path, edits: dict[str, str], key: str
) -> None:
    path = _sample(tmp_path, **edits)
    before = path.read_bytes()
    # An unreachable endpoint: any AWS call would fail with exit 1, not 2.
    run = cli("ensure-transactor", str(path), env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert run.code == 2, (run.stdout, run.stderr)
    assert f" {key}" in run.stderr
    assert f"{path}:" in run.stderr
    assert run.stderr.startswith("Error: ")
    assert "Traceback" not in run.stderr
    assert path.read_bytes() == before


def test_invalid_input_json_error_document(cli: Any, tmp_path: Path) -> None:
    path = _sample(tmp_path, **{"port=4334": "port=0", "protocol=ddb": "protocol=nope"})
    run = cli("--output", "json", "ensure-transactor", str(path))
    assert run.code == 2
    doc = run.json
    assert doc["command"] == "ensure-transactor"
    assert doc["error"]["exit_code"] == 2
    assert len(doc["error"]["messages"]) == 2


def test_missing_input_file_is_exit_2(cli: Any, tmp_path: Path) -> None:
    run = cli("ensure-transactor", str(tmp_path / "nope.properties"))
    assert run.code == 2
    assert "cannot read the file" in run.stderr


@pytest.mark.parametrize("output", ["text", "json"])
def test_sql_password_never_printed(cli: Any, boto: Any, tmp_path: Path, output: str) -> None:
    path = _sample(
        tmp_path,
        "sql-transactor.properties",
        **{
            "sql-password=change-me": f"sql-password={SECRET}",
            "# aws-s3-log-bucket-id=": "aws-s3-log-bucket-id=",
        },
    )
    for args in (["--dry-run"], [], []):
        run = cli("--output", output, "--debug", "ensure-transactor", *args, str(path))
        assert run.code == 0, run.stderr
        assert SECRET not in run.stdout
        assert SECRET not in run.stderr
    assert boto("dynamodb").list_tables()["TableNames"] == []
    value = boto("ssm").get_parameter(
        Name="/datomic/my-sql-system/transactor.properties", WithDecryption=True
    )["Parameter"]["Value"]
    assert f"sql-password={SECRET}" in value


def test_derived_name_taken_is_refused_then_adopted(cli: Any, boto: Any, tmp_path: Path) -> None:
    iam = boto("iam")
    iam.create_role(
        RoleName="datomic-my-datomic-system-peer",
        AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}',
    )
    path = _ddb(tmp_path)
    before = path.read_bytes()
    refused = cli("ensure-transactor", str(path))
    assert refused.code == 1
    assert "iam role datomic-my-datomic-system-peer" in refused.stderr
    assert "--adopt" in refused.stderr
    assert path.read_bytes() == before
    adopted = cli("ensure-transactor", "--adopt", str(path))
    assert adopted.code == 0, adopted.stderr
    assert cli("ensure-transactor", str(path)).code == 0


def test_help_does_not_import_boto3() -> None:
    code = (
        "import sys\n"
        "from datomic_aws.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print('boto3' in sys.modules, 'botocore' in sys.modules, 'jsonschema' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False False"
