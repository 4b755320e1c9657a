"""Issue 13's status, end to end: the real `datomic-aws` process against the embedded AWS that runs
emulated transactors (Datomic's HA protocol on the system's DynamoDB table, reference §10), so the
roles the instances publish are real ones; the transactor file enables Datomic's CloudWatch metrics
(aws-cloudwatch-region), so the active publishes HeartbeatMsec and status shows its age.

A configuration changed in SSM (ensure-transactor after an edit) but not rolled out (no new
template, no update-stack) is configuration drift: exit 3, saying which configuration the instances
run and which SSM holds. apply rolls it out: in sync, exit 0. Never a mutating call from status.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datomic_aws import names
from tests.cli.test_cli_ha import REGION, STACK, SYSTEM, Env, make_env, steady
from tests.sandbox.helpers import wait_for

SIZE = 2
# The status reads, each once: the stack, its events, the group, its instances, the launch
# template versions' user data, the SSM parameter's description, the heartbeat metric (CloudWatch's
# endpoint prefix is "monitoring").
ONCE = (
    "cloudformation:DescribeStacks",
    "cloudformation:DescribeStackEvents",
    "autoscaling:DescribeAutoScalingGroups",
    "ec2:DescribeInstances",
    "ec2:DescribeLaunchTemplateVersions",
    "ssm:DescribeParameters",
    "monitoring:GetMetricData",
)


def _deployed(tmp_path: Path, cli: Any, control: Any, endpoint: str) -> Env:
    """The samples with Datomic's CloudWatch metrics on (their commented lines), applied, `SIZE`
    transactors steady."""
    env = make_env(tmp_path, cli, control, endpoint, SIZE)
    env.edit(env.transactor, "# aws-cloudwatch-region=us-east-1", "aws-cloudwatch-region=us-east-1")
    env.edit(
        env.transactor,
        f"# aws-cloudwatch-dimension-value={SYSTEM}",
        f"aws-cloudwatch-dimension-value={SYSTEM}",
    )
    applied = env.apply()
    assert applied.code == 0, (applied.stdout[-3000:], applied.stderr[-3000:])
    steady(env, SIZE)
    return env


def _status(env: Env, *args: str) -> Any:
    return env.run(
        "--output", "json", "status", REGION, STACK, "--transactor", str(env.transactor), *args
    )


def _checked(run: Any, code: int) -> dict[str, Any]:
    """The status document of a run that exited `code` having made no mutating call and read
    each thing once."""
    assert run.code == code, (run.code, run.stdout[-3000:], run.stderr[-3000:])
    calls = run.json["aws_calls"]
    assert calls["mutating"] == 0, calls
    assert {op: calls["by_operation"].get(op) for op in ONCE} == dict.fromkeys(ONCE, 1), calls
    doc: dict[str, Any] = run.json["status"]
    return doc


def _roles_published(env: Env) -> dict[str, Any]:
    """A status run once each instance's role tag says what its transactor is (the instance
    keeps the tag current a moment after it changes role)."""

    def published() -> dict[str, Any] | None:
        doc = _checked(_status(env), 0)
        roles = sorted(str(i["role"]) for i in doc["group"]["instances"])
        return doc if roles == [names.ROLE_ACTIVE, names.ROLE_STANDBY] else None

    found: dict[str, Any] = wait_for(published, "both roles published", 30, 0.3)
    return found


def _assert_in_sync(env: Env, doc: dict[str, Any]) -> None:
    assert (doc["in_sync"], doc["out_of_sync"]) == (True, []), doc["out_of_sync"]
    config = doc["configuration"]
    assert config["in_sync"] is True
    version = int(env.value(env.transactor, "datomic-aws-config-version"))
    ((lt_version, running),) = config["running"].items()
    assert running == config["ssm"] == {k: config["local"][k] for k in ("version", "digest")}
    assert running["version"] == version
    assert [i["config_version"] for i in doc["group"]["instances"]] == [version] * SIZE
    assert doc["group"]["launch_template_version"] == lt_version
    beat = doc["heartbeat"]
    assert {k: beat[k] for k in ("source", "metric", "namespace", "dimension", "region")} == {
        "source": "cloudwatch",
        "metric": "HeartbeatMsec",
        "namespace": "Datomic",
        "dimension": {"name": "Transactor", "value": SYSTEM},
        "region": REGION,
    }, beat
    # The active reports every 12 heartbeats of 400 ms (sandbox/metrics.py); the age counts from
    # the start of the datapoint's 60 s period. Generous for a loaded machine.
    assert beat["resolution_seconds"] == 60 and beat["note"] is None, beat
    assert 0 <= beat["age_seconds"] < 60 + 20, beat


def test_status_reports_configuration_drift_until_apply_rolls_it_out(
    transactors_cli: Any, sandbox_control: Any, transactors_endpoint: str, tmp_path: Path
) -> None:
    env = _deployed(tmp_path, transactors_cli, sandbox_control, transactors_endpoint)

    # Converged: exit 0, both roles, the heartbeat's age, one configuration everywhere.
    doc = _roles_published(env)
    _assert_in_sync(env, doc)
    assert doc["group"]["suspended_processes"] == []
    text = env.run("status", REGION, STACK, "--transactor", str(env.transactor))
    assert text.code == 0, text.stderr
    assert (
        "  configuration /datomic/my-datomic-system/transactor.properties (us-east-1): in sync\n"
        in (text.stdout)
    )
    assert "  last heartbeat metric: " in text.stdout, text.stdout
    assert (
        " s ago (60 s resolution; HeartbeatMsec Transactor=my-datomic-system in us-east-1)\n"
        in (text.stdout)
    )
    assert " active " in text.stdout and " standby " in text.stdout
    old = doc["configuration"]["ssm"]

    # The configuration changed in SSM, the stack not updated: the instances run the old one.
    env.edit(env.transactor, "memory-index-threshold=32m", "memory-index-threshold=64m")
    changed = env.run("--output", "json", "ensure-transactor", str(env.transactor))
    assert changed.code == 0, changed.stderr[-3000:]
    drifted = _checked(_status(env), 3)
    assert drifted["in_sync"] is False
    config = drifted["configuration"]
    assert config["in_sync"] is False
    new = config["ssm"]
    assert new["version"] == old["version"] + 1 and new["digest"] != old["digest"]
    assert {k: config["local"][k] for k in ("version", "digest")} == new
    assert list(config["running"].values()) == [old]
    (reason,) = drifted["out_of_sync"]
    assert reason.startswith(
        f"instances on launch template version {drifted['group']['launch_template_version']} "
        f"run configuration version {old['version']}, hmac-sha256 {old['digest'][:12]}, SSM "
        f"holds version {new['version']}, hmac-sha256 {new['digest'][:12]}"
    ), reason
    # The instances themselves are current (the launch template did not change): only the
    # configuration says why.
    assert all(i["current"] for i in drifted["group"]["instances"])
    # Without the local file: the same drift, from AWS alone.
    alone = env.run("--output", "json", "status", REGION, STACK)
    assert alone.code == 3
    assert alone.json["status"]["out_of_sync"] == [reason]
    assert alone.json["status"]["configuration"]["local"] is None
    # Without the file, whether the transactor publishes metrics is unknown: said, and not read.
    assert alone.json["status"]["heartbeat"]["age_seconds"] is None
    assert alone.json["status"]["heartbeat"]["note"].startswith("no --transactor file")
    assert "monitoring:GetMetricData" not in alone.json["aws_calls"]["by_operation"]
    text = env.run("status", REGION, STACK, "--transactor", str(env.transactor))
    assert text.code == 3
    assert "(us-east-1): DRIFTED\n" in text.stdout
    assert f"    SSM: version {new['version']}, hmac-sha256 {new['digest'][:12]}\n" in text.stdout
    *_, last_finding, calls = text.stdout.splitlines()
    assert last_finding.endswith(f"out of sync: {reason}") and calls.startswith("AWS calls: ")

    # apply rolls the new configuration out: in sync again, exit 0.
    applied = env.apply()
    assert applied.code == 0, (applied.stdout[-3000:], applied.stderr[-3000:])
    steady(env, SIZE)
    doc = _roles_published(env)
    _assert_in_sync(env, doc)
    assert doc["configuration"]["ssm"] == new


def test_status_refuses_an_invalid_transactor_file_before_any_call(
    transactors_cli: Any, tmp_path: Path
) -> None:
    bad = tmp_path / "transactor.properties"
    bad.write_text("protocol=nonsense\n", encoding="latin-1")
    run = transactors_cli("--output", "json", "status", REGION, STACK, "--transactor", str(bad))
    assert run.code == 2, (run.stdout, run.stderr)
    assert "protocol" in run.stdout + run.stderr
    missing = transactors_cli("status", REGION, STACK, "--transactor", str(tmp_path / "none"))
    assert missing.code == 2 and "Traceback" not in missing.stderr
