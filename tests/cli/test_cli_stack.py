"""The stack commands through the real process, against a moto server: create-cf-stack,
update-stack (surge and terminate replacement, dry run, a kill in the middle), delete-cf-stack,
status and apply.

moto runs every Auto Scaling step synchronously: a new instance is InService the moment the group
asks for it. Where a test must see the state *between* two steps (the surge raised, the old
instance not yet terminated), the process talks to moto through `Proxy` (conftest), which answers
chosen operations late or holds them.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from datomic_aws.aws import is_mutating
from datomic_aws.sandbox.probe import InServicePoller
from tests.cli.fixtures import Proxy, start_cli

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"
REGION = "us-east-1"
ACCOUNT = "123456789012"
SYSTEM = "my-datomic-system"
STACK = f"datomic-{SYSTEM}"
GROUP = f"datomic-{SYSTEM}-transactors"
TEMPLATES_BUCKET = f"datomic-aws-templates-{ACCOUNT}-{REGION}"
LOG_BUCKET = f"datomic-{SYSTEM}-logs-{ACCOUNT}-{REGION}"
PARAMETER = f"/datomic/{SYSTEM}/transactor.properties"
FAST = ("--poll-interval", "0.1")
# The Auto Scaling writes of a replacement, answered late by the proxy so that a poller sees
# each intermediate state of the group for a while.
SCALING_WRITES = (
    "SetDesiredCapacity",
    "UpdateAutoScalingGroup",
    "TerminateInstanceInAutoScalingGroup",
)
PENDING_CHANGE_SET = {"CREATE_PENDING", "CREATE_IN_PROGRESS", "FAILED"}


@dataclass
class Folder:
    path: Path

    @property
    def transactor(self) -> Path:
        return self.path / "transactor.properties"

    @property
    def cf(self) -> Path:
        return self.path / "cf.properties"

    @property
    def template(self) -> Path:
        return self.path / "cf.json"

    def edit(self, path: Path, **edits: str) -> None:
        text = path.read_text(encoding="latin-1")
        for old, new in edits.items():
            assert old in text, old
            text = text.replace(old, new)
        path.write_text(text, encoding="latin-1")

    def value(self, path: Path, key: str) -> str:
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith(f"{key}="):
                return line.split("=", 1)[1]
        raise AssertionError(f"{key} not in {path}")


def _folder(tmp_path: Path, size: int = 1) -> Folder:
    folder = Folder(tmp_path / "env")
    folder.path.mkdir()
    for name in ("transactor.properties", "cf.properties"):
        shutil.copyfile(SAMPLES / name, folder.path / name)
    folder.edit(folder.transactor, **{"# aws-s3-log-bucket-id=": "aws-s3-log-bucket-id="})
    folder.edit(folder.cf, **{"aws-autoscaling-group-size=1": f"aws-autoscaling-group-size={size}"})
    return folder


def _ok(run: Any) -> Any:
    assert run.code == 0, (run.stdout, run.stderr)
    return run


def _prepared(cli: Any, tmp_path: Path, size: int = 1) -> Folder:
    """ensure-transactor, ensure-cf and create-cf-template, done; no stack yet."""
    folder = _folder(tmp_path, size)
    _ok(cli("ensure-transactor", str(folder.transactor)))
    _ok(cli("ensure-cf", str(folder.cf)))
    _regenerate(cli, folder)
    return folder


def _regenerate(cli: Any, folder: Folder) -> None:
    _ok(cli("create-cf-template", str(folder.transactor), str(folder.cf), str(folder.template)))


def _created(cli: Any, tmp_path: Path, size: int = 1) -> Folder:
    folder = _prepared(cli, tmp_path, size)
    _ok(cli("create-cf-stack", REGION, STACK, str(folder.template), *FAST))
    return folder


def _change_type(cli: Any, folder: Folder, new_type: str) -> None:
    old = folder.value(folder.cf, "aws-instance-type")
    folder.edit(
        folder.cf,
        **{
            f"aws-instance-type={old}": f"aws-instance-type={new_type}",
            f"java-xmx={folder.value(folder.cf, 'java-xmx')}": "java-xmx=",
        },
    )
    _ok(cli("ensure-cf", str(folder.cf)))
    _regenerate(cli, folder)


def _group(boto: Any) -> dict[str, Any]:
    (group,) = boto("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
        "AutoScalingGroups"
    ]
    return dict(group)


def _sizes(group: dict[str, Any]) -> tuple[int, int, int]:
    return group["MinSize"], group["DesiredCapacity"], group["MaxSize"]


def _types(boto: Any, group: dict[str, Any]) -> dict[str, str]:
    ids = [i["InstanceId"] for i in group["Instances"]]
    reservations = boto("ec2").describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"]: i["InstanceType"] for r in reservations for i in r["Instances"]}


def _latest_version(boto: Any, group: dict[str, Any]) -> str:
    lt_id = group["LaunchTemplate"]["LaunchTemplateId"]
    (lt,) = boto("ec2").describe_launch_templates(LaunchTemplateIds=[lt_id])["LaunchTemplates"]
    return str(lt["LatestVersionNumber"])


def _assert_all_current(boto: Any, instance_type: str, size: int) -> dict[str, Any]:
    group = _group(boto)
    assert _sizes(group) == (size, size, size + 1)
    assert len(group["Instances"]) == size
    assert set(_types(boto, group).values()) == {instance_type}
    latest = _latest_version(boto, group)
    assert group["LaunchTemplate"]["Version"] == latest
    assert {i["LaunchTemplate"]["Version"] for i in group["Instances"]} == {latest}
    assert {(i["LifecycleState"], i["HealthStatus"]) for i in group["Instances"]} == {
        ("InService", "Healthy")
    }
    return group


def _change_sets(boto: Any) -> list[dict[str, Any]]:
    summaries = boto("cloudformation").list_change_sets(StackName=STACK)["Summaries"]
    return [{k: s[k] for k in ("ChangeSetName", "Status", "ExecutionStatus")} for s in summaries]


def _no_pending_change_set(boto: Any) -> list[dict[str, Any]]:
    sets = _change_sets(boto)
    assert not [s for s in sets if s["Status"] in PENDING_CHANGE_SET], sets
    assert {s["ExecutionStatus"] for s in sets} == {"EXECUTE_COMPLETE"}, sets
    return sets


def _stack(boto: Any) -> dict[str, Any]:
    (stack,) = boto("cloudformation").describe_stacks(StackName=STACK)["Stacks"]
    return dict(stack)


def _replaced(doc: dict[str, Any]) -> list[str]:
    return [
        c["resource"].split()[2]
        for c in doc["changes"]
        if c["resource"].startswith("ec2 instance ") and c["action"] == "update"
    ]


# --- create-cf-stack ------------------------------------------------------------------------


def test_create_cf_stack_creates_then_rerun_is_a_noop_and_another_template_is_refused(
    cli: Any, boto: Any, tmp_path: Path
) -> None:
    folder = _prepared(cli, tmp_path)
    body = folder.template.read_bytes()
    run = _ok(
        cli("--output", "json", "create-cf-stack", REGION, STACK, str(folder.template), *FAST)
    )
    doc = run.json
    assert doc["command"] == "create-cf-stack"
    actions = {c["resource"]: c["action"] for c in doc["changes"]}
    assert actions == {
        f"s3 bucket {TEMPLATES_BUCKET}": "create",
        f"stack/{STACK}": "create",
        f"stack/{STACK}/AutoScalingGroup": "create",
        f"stack/{STACK}/LaunchTemplate": "create",
    }
    calls = doc["aws_calls"]["by_operation"]
    assert calls["cloudformation:CreateChangeSet"] == 1
    assert calls["cloudformation:ExecuteChangeSet"] == 1
    assert calls["cloudformation:UpdateTerminationProtection"] == 1
    assert calls["s3:PutObject"] == 1
    assert "cloudformation:CreateStack" not in calls
    assert "CREATE_COMPLETE" in run.stderr

    # The template went through the templates bucket, content-addressed.
    key = f"{STACK}/{hashlib.sha256(body).hexdigest()}.json"
    s3 = boto("s3")
    assert s3.get_object(Bucket=TEMPLATES_BUCKET, Key=key)["Body"].read() == body
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=TEMPLATES_BUCKET)["Contents"]] == [key]
    stack = _stack(boto)
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert stack["EnableTerminationProtection"] is True
    assert {t["Key"]: t["Value"] for t in stack["Tags"]}["datomic:system"] == SYSTEM
    group = _group(boto)
    assert _sizes(group) == (1, 1, 2)
    assert list(_types(boto, group).values()) == ["m7i.large"]
    subnets = set(folder.value(folder.cf, "aws-subnet-ids").split(","))
    reservations = boto("ec2").describe_instances(
        InstanceIds=[i["InstanceId"] for i in group["Instances"]]
    )["Reservations"]
    assert {i["SubnetId"] for r in reservations for i in r["Instances"]} <= subnets
    sets = _no_pending_change_set(boto)

    again = _ok(cli("--output", "json", "create-cf-stack", REGION, STACK, str(folder.template)))
    assert again.json["changed"] is False
    assert [c["action"] for c in again.json["changes"]] == ["noop"]
    assert again.json["aws_calls"]["mutating"] == 0, again.json["aws_calls"]
    assert _change_sets(boto) == sets

    other = folder.path / "other.json"
    doc_other = json.loads(body)
    doc_other["Description"] += " (edited)"
    other.write_text(json.dumps(doc_other, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    refused = cli("create-cf-stack", REGION, STACK, str(other), *FAST)
    assert refused.code == 1, (refused.stdout, refused.stderr)
    assert "the stack exists with a different template" in refused.stderr
    assert f"datomic-aws update-stack {REGION} {STACK}" in refused.stderr
    assert _change_sets(boto) == sets
    assert _stack(boto)["StackStatus"] == "CREATE_COMPLETE"


# --- update-stack ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2])
def test_update_stack_surges_one_at_a_time_without_a_gap(
    cli: Any, boto: Any, endpoint: str, proxy: Proxy, tmp_path: Path, size: int
) -> None:
    folder = _created(cli, tmp_path, size)
    old_ids = {i["InstanceId"] for i in _group(boto)["Instances"]}
    assert len(old_ids) == size
    _change_type(cli, folder, "m7i.xlarge")

    for op in SCALING_WRITES:
        proxy.delays[op] = 0.3
    # The group read every ~20 ms from the test process: samples of (desired, in service).
    with InServicePoller(endpoint, REGION, GROUP) as poller:
        run = cli(
            "--output",
            "json",
            "update-stack",
            REGION,
            STACK,
            str(folder.template),
            *FAST,
            env={"AWS_ENDPOINT_URL": proxy.url},
        )
    _ok(run)
    doc = run.json

    # Capacity first: the group was raised by one, then one old instance went, size times.
    writes = [op for op in proxy.log if op in SCALING_WRITES]
    assert writes == [
        "UpdateAutoScalingGroup",  # onto the stack's new launch template version (moto drift)
        *["SetDesiredCapacity", "TerminateInstanceInAutoScalingGroup"] * size,
    ]
    assert len(poller.samples) > 20
    assert min(s[1] for s in poller.samples) >= size, poller.samples
    # The surge was seen (size + 1 serving), and never more than one extra at a time. (moto
    # launches the replacement of a terminate-first within the same call, so a wrong order shows
    # here as a surge never seen, and in `writes` above.)
    assert max(s[1] for s in poller.samples) == size + 1
    assert max(s[0] for s in poller.samples) == size + 1

    group = _assert_all_current(boto, "m7i.xlarge", size)
    assert not old_ids & {i["InstanceId"] for i in group["Instances"]}
    assert sorted(_replaced(doc)) == sorted(old_ids)
    stack_change = next(c for c in doc["changes"] if c["resource"] == f"stack/{STACK}")
    assert stack_change["action"] == "update"
    assert "parameter InstanceType: m7i.large -> m7i.xlarge" in stack_change["details"]
    calls = doc["aws_calls"]["by_operation"]
    assert calls["autoscaling:TerminateInstanceInAutoScalingGroup"] == size
    assert calls["autoscaling:SetDesiredCapacity"] == size
    for i in _replaced(doc):
        assert f"{GROUP}: launching a replacement for {i}" in run.stderr
        assert f"{GROUP}: terminating {i} with a decrement" in run.stderr
    # moto runs no transactor, so no instance publishes a role: the old order, and a warning.
    assert "Warning: no instance of the group publishes its Datomic role" in run.stderr
    assert any("roles were not published" in w for w in doc["warnings"])
    # The availability figures: the InService floor seen, the gap not measurable without roles.
    availability = doc["availability"]
    assert availability["min_in_service"] >= size and availability["group_size"] == size
    assert availability["replaced"] == size and availability["roles_known"] is False
    assert availability["no_active_seconds"] is None
    report = next(
        c
        for c in doc["changes"]
        if c["resource"] == f"autoscaling group {GROUP}"
        and any("lowest InService count seen" in d for d in c["details"])
    )
    assert any("not measured" in d for d in report["details"])
    assert calls["autoscaling:SuspendProcesses"] == calls["autoscaling:ResumeProcesses"] == 1
    assert _group(boto).get("SuspendedProcesses", []) == []
    _no_pending_change_set(boto)

    again = _ok(cli("--output", "json", "update-stack", REGION, STACK, str(folder.template)))
    assert again.json["changed"] is False
    assert again.json["aws_calls"]["mutating"] == 0, again.json["aws_calls"]
    assert {c["action"] for c in again.json["changes"]} == {"noop"}
    _no_pending_change_set(boto)
    _assert_all_current(boto, "m7i.xlarge", size)


def test_update_stack_strategy_terminate_needs_yes_and_warns(
    cli: Any, boto: Any, tmp_path: Path
) -> None:
    folder = _created(cli, tmp_path)
    (old,) = [i["InstanceId"] for i in _group(boto)["Instances"]]
    _change_type(cli, folder, "m7i.xlarge")
    args = ("update-stack", REGION, STACK, str(folder.template), "--strategy", "terminate", *FAST)

    refused = cli(*args)  # stdin is not a terminal
    assert refused.code == 2, (refused.stdout, refused.stderr)
    assert "Error: this step needs a confirmation" in refused.stderr
    assert "--yes" in refused.stderr
    assert refused.stdout == ""
    params = {p["ParameterKey"]: p["ParameterValue"] for p in _stack(boto)["Parameters"]}
    assert params["InstanceType"] == "m7i.large"
    assert [i["InstanceId"] for i in _group(boto)["Instances"]] == [old]

    run = _ok(cli("--output", "json", *args, "--yes"))
    warning = (
        "Warning: strategy 'terminate' stops each old instance before its replacement is "
        "InService: with a group of 1 the transactor is down for the whole boot of the new instance"
    )
    assert warning in run.stderr
    assert f"{GROUP}: terminating {old}; Auto Scaling launches its replacement" in run.stderr
    doc = run.json
    assert _replaced(doc) == [old]
    calls = doc["aws_calls"]["by_operation"]
    assert calls["autoscaling:TerminateInstanceInAutoScalingGroup"] == 1
    assert "autoscaling:SetDesiredCapacity" not in calls
    group = _assert_all_current(boto, "m7i.xlarge", 1)
    assert old not in {i["InstanceId"] for i in group["Instances"]}


def _reader(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def test_update_killed_in_the_middle_of_a_surge_converges_on_rerun(
    cli: Any, boto: Any, endpoint: str, proxy: Proxy, tmp_path: Path
) -> None:
    folder = _created(cli, tmp_path)
    (old,) = [i["InstanceId"] for i in _group(boto)["Instances"]]
    _change_type(cli, folder, "m7i.xlarge")

    # The old instance's termination never reaches AWS: the process is killed while it waits.
    proxy.held_operations.add("TerminateInstanceInAutoScalingGroup")
    proc = start_cli(
        proxy.url, "update-stack", REGION, STACK, str(folder.template), "--poll-interval", "2"
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stderr, lines), daemon=True).start()
    seen: list[str] = []
    try:
        while not any("launching a replacement" in line for line in seen):
            seen.append(lines.get(timeout=60))
        assert proxy.wait_held("TerminateInstanceInAutoScalingGroup", timeout=30), seen
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert f"launching a replacement for {old} (desired 1 -> 2)" in "".join(seen)

    # Left over size: the replacement runs next to the old instance.
    group = _group(boto)
    assert _sizes(group) == (1, 2, 2)
    assert {i["InstanceId"] for i in group["Instances"]} > {old}
    assert len(group["Instances"]) == 2

    rerun = _ok(cli("--output", "json", "update-stack", REGION, STACK, str(folder.template), *FAST))
    doc = rerun.json
    assert _replaced(doc) == [old]
    # The stack was already updated: only the instances were left to converge, and the
    # replacement the killed run launched is kept rather than launching another.
    calls = doc["aws_calls"]["by_operation"]
    assert "cloudformation:ExecuteChangeSet" not in calls
    assert "autoscaling:SetDesiredCapacity" not in calls
    assert calls["autoscaling:TerminateInstanceInAutoScalingGroup"] == 1
    survivor = (set(i["InstanceId"] for i in group["Instances"]) - {old}).pop()
    final = _assert_all_current(boto, "m7i.xlarge", 1)
    assert [i["InstanceId"] for i in final["Instances"]] == [survivor]

    settled = _ok(cli("--output", "json", "update-stack", REGION, STACK, str(folder.template)))
    assert settled.json["aws_calls"]["mutating"] == 0


def test_update_stack_dry_run_plans_with_only_change_set_writes(
    cli: Any, boto: Any, tmp_path: Path
) -> None:
    folder = _created(cli, tmp_path)
    (old,) = [i["InstanceId"] for i in _group(boto)["Instances"]]
    before_sets = _change_sets(boto)
    # A new instance type and a new transactor configuration (its digest is in the launch
    # template; moto's change sets list nothing for a parameter-only change).
    folder.edit(folder.transactor, **{"memory-index-max=512m": "memory-index-max=600m"})
    _ok(cli("ensure-transactor", str(folder.transactor)))
    _change_type(cli, folder, "m7i.xlarge")
    args = ("update-stack", "--dry-run", REGION, STACK, str(folder.template), *FAST)

    plan = cli("--output", "json", *args, "--detailed-exitcode")
    assert plan.code == 3, (plan.stdout, plan.stderr)
    doc = plan.json
    assert doc["dry_run"] is True
    assert doc["changed"] is True
    mutating = {
        k: v for k, v in doc["aws_calls"]["by_operation"].items() if is_mutating(k.split(":")[1])
    }
    assert mutating == {"cloudformation:CreateChangeSet": 1, "cloudformation:DeleteChangeSet": 1}
    assert doc["aws_calls"]["mutating"] == 2
    changes = {c["resource"]: c for c in doc["changes"]}
    assert changes[f"stack/{STACK}"]["action"] == "update"
    assert "parameter InstanceType: m7i.large -> m7i.xlarge" in changes[f"stack/{STACK}"]["details"]
    assert changes[f"stack/{STACK}/LaunchTemplate"]["action"] == "update"
    assert changes[f"autoscaling group {GROUP}"]["details"] == [
        f"the launch template changes: 1 instance(s) would be replaced (surge): {old}"
    ]
    text = _ok(cli(*args))
    assert "update-stack (dry run: nothing written)" in text.stdout
    assert f"1 instance(s) would be replaced (surge): {old}" in text.stdout

    # Nothing happened: no change set left, the old instance and the old parameters in place.
    assert _change_sets(boto) == before_sets
    params = {p["ParameterKey"]: p["ParameterValue"] for p in _stack(boto)["Parameters"]}
    assert params["InstanceType"] == "m7i.large"
    group = _group(boto)
    assert [i["InstanceId"] for i in group["Instances"]] == [old]
    assert _sizes(group) == (1, 1, 2)

    _ok(cli("update-stack", REGION, STACK, str(folder.template), *FAST))
    settled = cli("--output", "json", *args, "--detailed-exitcode")
    assert settled.code == 0, settled.stderr
    assert settled.json["changed"] is False
    assert settled.json["aws_calls"]["mutating"] == 0


# --- delete-cf-stack ------------------------------------------------------------------------


def test_delete_cf_stack_needs_yes_and_keeps_everything_outside_the_stack(
    cli: Any, boto: Any, tmp_path: Path
) -> None:
    _created(cli, tmp_path)
    refused = cli("delete-cf-stack", REGION, STACK, *FAST)
    assert refused.code == 2, (refused.stdout, refused.stderr)
    assert "--yes" in refused.stderr
    assert _stack(boto)["StackStatus"] == "CREATE_COMPLETE"

    run = _ok(cli("--output", "json", "delete-cf-stack", REGION, STACK, "--yes", *FAST))
    doc = run.json
    assert doc["changes"] == [
        {"resource": f"stack/{STACK}", "action": "delete", "details": ["CREATE_COMPLETE"]}
    ]
    assert doc["aws_calls"]["by_operation"]["cloudformation:DeleteStack"] == 1
    assert doc["aws_calls"]["by_operation"]["cloudformation:UpdateTerminationProtection"] == 1
    assert doc["kept"] == (
        "the DynamoDB table, the roles and instance profiles, the log and templates buckets and "
        "the SSM configuration parameter are not part of the stack and were left in place"
    )
    with pytest.raises(ClientError, match="does not exist"):
        boto("cloudformation").describe_stacks(StackName=STACK)

    # Everything outside the stack is still there.
    assert boto("dynamodb").describe_table(TableName=SYSTEM)["Table"]["TableStatus"] == "ACTIVE"
    iam = boto("iam")
    for role in (f"datomic-{SYSTEM}-transactor", f"datomic-{SYSTEM}-peer"):
        assert iam.get_role(RoleName=role)["Role"]["RoleName"] == role
        profile = iam.get_instance_profile(InstanceProfileName=role)["InstanceProfile"]
        assert [r["RoleName"] for r in profile["Roles"]] == [role]
    s3 = boto("s3")
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert buckets == {LOG_BUCKET, TEMPLATES_BUCKET}
    assert s3.list_objects_v2(Bucket=TEMPLATES_BUCKET)["KeyCount"] == 1
    assert boto("ssm").get_parameter(Name=PARAMETER)["Parameter"]["Type"] == "SecureString"

    again = _ok(cli("delete-cf-stack", REGION, STACK, "--yes", *FAST))
    assert f"= noop   stack/{STACK}" in again.stdout
    assert "kept: the DynamoDB table" in again.stdout
    assert "No changes. 1 unchanged." in again.stdout
    quiet = _ok(cli("--output", "json", "delete-cf-stack", REGION, STACK, "--yes"))
    assert quiet.json["aws_calls"]["mutating"] == 0


# --- status ---------------------------------------------------------------------------------


def test_status_text_and_json(cli: Any, boto: Any, tmp_path: Path) -> None:
    folder = _created(cli, tmp_path)
    (old,) = [i["InstanceId"] for i in _group(boto)["Instances"]]
    status = ("status", REGION, STACK, "--template", str(folder.template))

    doc = _ok(cli("--output", "json", *status)).json
    assert doc["aws_calls"]["mutating"] == 0
    s = doc["status"]
    assert (s["exists"], s["stack_status"], s["state"]) == (True, "CREATE_COMPLETE", "ready")
    assert s["termination_protection"] is True
    assert s["template"] == {"path": str(folder.template), "matches_deployed": True}
    assert "CREATE_COMPLETE" in s["last_event"]
    g = s["group"]
    assert (g["name"], g["min"], g["desired"], g["max"], g["in_service"]) == (GROUP, 1, 1, 2, 1)
    assert g["launch_template_version"] == "1"
    (instance,) = g["instances"]
    assert {k: instance[k] for k in ("id", "type", "lifecycle_state", "health")} == {
        "id": old,
        "type": "m7i.large",
        "lifecycle_state": "InService",
        "health": "Healthy",
    }
    assert (instance["launch_template_version"], instance["current"]) == ("1", True)
    assert instance["role"] is None  # moto runs no transactor: no role published
    assert (s["in_sync"], s["out_of_sync"]) == (True, [])

    text = _ok(cli(*status)).stdout
    assert text.startswith(f"stack {STACK} ({REGION}): CREATE_COMPLETE\n")
    assert "  termination protection: on\n" in text
    assert f"  template {folder.template}: matches the deployed one\n" in text
    assert (
        f"  group {GROUP}: min 1 / desired 1 / max 2, 1 in service, launch template version 1\n"
        in text
    )
    assert f"    {old}  m7i.large " in text
    assert " Healthy   -        v1  current" in text
    *_, last_row, calls = text.splitlines()
    assert last_row.endswith("v1  current") and calls.startswith("AWS calls: ")

    # The role each instance publishes (datomic:role, kept current by the instance).
    boto("ec2").create_tags(Resources=[old], Tags=[{"Key": "datomic:role", "Value": "active"}])
    (instance,) = _ok(cli("--output", "json", *status)).json["status"]["group"]["instances"]
    assert instance["role"] == "active"
    assert " Healthy   active   v1  current" in _ok(cli(*status)).stdout

    # A new instance type, the stack updated but the instance left alone: outdated, and the
    # previous local template no longer matches.
    previous = folder.template.read_text(encoding="utf-8")
    _change_type(cli, folder, "m7i.xlarge")
    _ok(cli("update-stack", REGION, STACK, str(folder.template), "--no-replace", *FAST))
    stale = folder.path / "previous.json"
    stale.write_text(previous, encoding="utf-8")
    # Out of sync: exit 3 (for scripts), and the JSON says why.
    stale_run = cli("--output", "json", "status", REGION, STACK, "--template", str(stale))
    assert stale_run.code == 3, (stale_run.stdout, stale_run.stderr)
    doc = stale_run.json
    s = doc["status"]
    assert s["stack_status"] == "UPDATE_COMPLETE"
    assert s["template"] == {"path": str(stale), "matches_deployed": False}
    assert s["group"]["launch_template_version"] == "2"
    (instance,) = s["group"]["instances"]
    assert (instance["id"], instance["type"]) == (old, "m7i.large")
    assert (instance["launch_template_version"], instance["current"]) == ("1", False)
    assert s["in_sync"] is False
    assert s["out_of_sync"] == [
        f"the template {stale} differs from the deployed one",
        f"outdated instance(s): {old}",
    ]
    text_run = cli("status", REGION, STACK, "--template", str(stale))
    assert text_run.code == 3
    text = text_run.stdout
    assert f"  template {stale}: DIFFERS from the deployed one\n" in text
    assert "v1  OUTDATED\n" in text
    *_, finding, calls = text.splitlines()
    assert finding.endswith(
        f"out of sync: the template {stale} differs from the deployed one; outdated instance(s): {old}"
    )
    assert calls.startswith("AWS calls: ")
    # The current template matches, but the instance is still outdated: still 3.
    current_template = cli(*status)
    assert current_template.code == 3
    assert "matches the deployed one" in current_template.stdout
    finding = current_template.stdout.splitlines()[-2]
    assert finding.endswith(f"out of sync: outdated instance(s): {old}")
    # Once replaced: in sync, exit 0. (Without a role: no emulated transactor would take over.)
    boto("ec2").delete_tags(Resources=[old], Tags=[{"Key": "datomic:role"}])
    _ok(cli("update-stack", REGION, STACK, str(folder.template), *FAST))
    assert _ok(cli("--output", "json", *status)).json["status"]["in_sync"] is True

    missing = cli("status", REGION, "no-such-stack")
    assert missing.code == 3
    assert missing.stdout == (
        f"stack no-such-stack ({REGION}): does not exist\nAWS calls: 1 (0 mutating).\n"
    )
    missing_json = cli("--output", "json", "status", REGION, "no-such-stack")
    assert missing_json.code == 3
    assert missing_json.json["status"] == {
        "exists": False,
        "region": REGION,
        "stack": "no-such-stack",
        "in_sync": False,
        "out_of_sync": ["the stack does not exist"],
    }
    help_text = " ".join(_ok(cli("status", "--help")).stdout.split())
    assert "0 when the stack, the template (with --template) and the instances are in sync" in (
        help_text
    )
    assert "3 when the stack is missing or in progress" in help_text


# --- apply ----------------------------------------------------------------------------------


def _snapshot(folder: Folder) -> dict[str, tuple[bytes, int]]:
    return {
        p.name: (p.read_bytes(), os.stat(p).st_mtime_ns)
        for p in (folder.transactor, folder.cf, folder.template)
    }


def test_apply_twice_then_a_new_instance_type_then_a_noop(
    cli: Any, boto: Any, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    originals = {p.name: p.read_bytes() for p in (folder.transactor, folder.cf)}
    first = _ok(cli("--output", "json", "apply", str(folder.path), *FAST))
    doc = first.json
    assert doc["command"] == "apply"
    assert (doc["stack"], doc["region"]) == (STACK, REGION)
    assert {f["path"]: f["written"] for f in doc["files"]} == {
        str(folder.transactor): True,
        str(folder.cf): True,
        str(folder.template): True,
    }
    for p in (folder.transactor, folder.cf):
        assert p.read_bytes() != originals[p.name]
    assert folder.value(folder.cf, "aws-stack-name") == STACK
    assert json.loads(folder.template.read_text(encoding="utf-8"))["Resources"]
    assert _stack(boto)["StackStatus"] == "CREATE_COMPLETE"
    assert list(_types(boto, _group(boto)).values()) == ["m7i.large"]

    before = _snapshot(folder)
    second = _ok(cli("--output", "json", "apply", str(folder.path), *FAST))
    doc = second.json
    assert doc["changed"] is False
    assert doc["aws_calls"]["mutating"] == 0, doc["aws_calls"]
    assert doc["aws_calls"]["total"] <= 45, doc["aws_calls"]
    assert {c["action"] for c in doc["changes"]} == {"noop"}
    assert [f["written"] for f in doc["files"]] == [False, False, False]
    assert _snapshot(folder) == before

    (old,) = [i["InstanceId"] for i in _group(boto)["Instances"]]
    # A new transactor configuration too: its digest is in the launch template (moto's change
    # sets list nothing for a parameter-only change).
    folder.edit(folder.transactor, **{"memory-index-max=512m": "memory-index-max=600m"})
    folder.edit(
        folder.cf,
        **{
            "aws-instance-type=m7i.large": "aws-instance-type=m7i.xlarge",
            "java-xmx=5734m": "java-xmx=",
        },
    )
    third = _ok(cli("--output", "json", "apply", str(folder.path), *FAST))
    doc = third.json
    assert _replaced(doc) == [old]
    assert folder.value(folder.cf, "java-xmx") == "11468m"
    assert {f["path"]: f["written"] for f in doc["files"]} == {
        # The new configuration's parameter version is written back (issue 10).
        str(folder.transactor): True,
        str(folder.cf): True,
        str(folder.template): True,
    }
    assert folder.value(folder.transactor, "datomic-aws-config-version") == "2"
    assert f"{GROUP}: launching a replacement for {old} (desired 1 -> 2)" in third.stderr
    _assert_all_current(boto, "m7i.xlarge", 1)

    before = _snapshot(folder)
    fourth = _ok(cli("--output", "json", "apply", str(folder.path), *FAST))
    assert fourth.json["changed"] is False
    assert fourth.json["aws_calls"]["mutating"] == 0, fourth.json["aws_calls"]
    assert _snapshot(folder) == before
    _no_pending_change_set(boto)


def test_apply_dry_run_on_a_fresh_folder_writes_nothing(
    cli: Any, boto: Any, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    before = {p.name: p.read_bytes() for p in (folder.transactor, folder.cf)}
    run = _ok(cli("--output", "json", "apply", "--dry-run", str(folder.path)))
    doc = run.json
    assert doc["dry_run"] is True
    assert doc["changed"] is True
    assert doc["aws_calls"]["mutating"] == 0, doc["aws_calls"]
    assert {f["path"]: f["written"] for f in doc["files"]} == {
        str(folder.transactor): False,
        str(folder.cf): False,
    }
    assert {p.name: p.read_bytes() for p in (folder.transactor, folder.cf)} == before
    assert sorted(p.name for p in folder.path.iterdir()) == [
        "cf.properties",
        "transactor.properties",
    ]
    assert boto("dynamodb").list_tables()["TableNames"] == []
    assert boto("cloudformation").describe_stacks()["Stacks"] == []
    assert boto("iam").list_roles()["Roles"] == []
    detailed = cli("apply", "--dry-run", "--detailed-exitcode", str(folder.path))
    assert detailed.code == 3, detailed.stderr


# --- dry run and real run: one plan -----------------------------------------------------------


def _stack_plan(doc: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """The stack's change set summary as the tool reports it."""
    return [
        (c["resource"], c["action"], c["details"])
        for c in doc["changes"]
        if c["resource"] == f"stack/{STACK}" or c["resource"].startswith(f"stack/{STACK}/")
    ]


def _would_replace(doc: dict[str, Any]) -> list[str]:
    """The instances a dry run says it would replace, from its group line."""
    (line,) = [
        d
        for c in doc["changes"]
        if c["resource"] == f"autoscaling group {GROUP}"
        for d in c["details"]
        if "would be replaced" in d
    ]
    return [i.split(" ")[0] for i in line.rsplit(": ", 1)[1].split(", ")]


def _same_plan(dry: Any, real: Any) -> None:
    plan, done = dry.json, real.json
    assert plan["dry_run"] is True and done["dry_run"] is False
    assert _stack_plan(plan) == _stack_plan(done)
    assert any(action == "update" for _, action, _ in _stack_plan(plan)), plan["changes"]
    assert _would_replace(plan) == _replaced(done)
    assert [(f["path"], f["changed"], f["diff"]) for f in plan["files"]] == [
        (f["path"], f["changed"], f["diff"]) for f in done["files"]
    ]


def test_a_dry_run_and_a_real_run_print_the_same_plan(cli: Any, boto: Any, tmp_path: Path) -> None:
    """apply and update-stack: the stack's change set summary, the file changes and the
    instances replaced are what the dry run said they would be."""
    folder = _folder(tmp_path)
    _ok(cli("apply", str(folder.path), *FAST))
    (old,) = [i["InstanceId"] for i in _group(boto)["Instances"]]
    # A new transactor configuration too: its digest is in the launch template (moto's change
    # sets list nothing for a parameter-only change).
    folder.edit(folder.transactor, **{"memory-index-max=512m": "memory-index-max=600m"})
    folder.edit(
        folder.cf,
        **{
            "aws-instance-type=m7i.large": "aws-instance-type=m7i.xlarge",
            "java-xmx=5734m": "java-xmx=",
        },
    )
    apply = ("--output", "json", "apply", str(folder.path), *FAST)
    dry = _ok(cli(*apply[:3], "--dry-run", *apply[3:]))
    assert _would_replace(dry.json) == [old]
    _same_plan(dry, _ok(cli(*apply)))

    (old,) = [i["InstanceId"] for i in _group(boto)["Instances"]]
    folder.edit(folder.transactor, **{"memory-index-max=600m": "memory-index-max=512m"})
    _ok(cli("ensure-transactor", str(folder.transactor)))
    _change_type(cli, folder, "m7i.large")
    update = ("--output", "json", "update-stack", REGION, STACK, str(folder.template), *FAST)
    dry = _ok(cli(*update[:3], "--dry-run", *update[3:]))
    assert _would_replace(dry.json) == [old]
    _same_plan(dry, _ok(cli(*update)))
    _assert_all_current(boto, "m7i.large", 1)


# What only a write can know, left out of a real run's plan before it is compared with the dry
# run's: the id AWS gives the security group ensure-cf creates (reported on the group's line and
# written back to aws-security-group-id).
_CREATED_ID = re.compile(r"^(id sg-[0-9a-f]+|[-+]aws-security-group-id=.*)$")
# Likewise the keyed digest of a parameter created on a first run: the digest key is 256 random
# bits each run generates (datomic-aws-digest-secret), so the dry run's digest is of a key it does
# not keep. Only the creation's detail is masked; an update's digests are compared as they are.
_FIRST_DIGEST = re.compile(r"^(SecureString, hmac-sha256) [0-9a-f]{12}$")
# The same digest, recorded in the file beside the version (issue 10), when the key is new.
_FIRST_RECORDED = re.compile(r"^(\+datomic-aws-config-digest=)[0-9a-f]{64}$")


def _plan(doc: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """Every change a run reports, as the dry run words it and the real run reports it done."""
    return [
        (
            c["resource"],
            c["action"],
            [
                _FIRST_DIGEST.sub(r"\1 (new key)", d)
                for d in c["details"]
                if not _CREATED_ID.match(d)
            ],
        )
        for c in doc["changes"]
    ]


def _file_plan(doc: dict[str, Any]) -> list[tuple[str, bool, list[str]]]:
    """Each file's path, whether it changes, and its changed lines."""
    plans = []
    for f in doc["files"]:
        lines = [
            line
            for line in (f["diff"] or "").splitlines()
            if line[:1] in "+-" and line[:3] not in ("+++", "---")
            if not _CREATED_ID.match(line)
        ]
        if any(line.startswith("+datomic-aws-digest-secret=") for line in lines):
            lines = [_FIRST_RECORDED.sub(r"\1(new key)", line) for line in lines]
        plans.append((f["path"], f["changed"], lines))
    return plans


def _same_plan_as_dry_run(cli: Any, *args: str) -> dict[str, Any]:
    """`args` run with --dry-run, then for real, on the same state: the real run does exactly what
    the dry run planned (every resource, action and detail; every file line), no more, no less."""
    dry = _ok(cli("--output", "json", args[0], "--dry-run", *args[1:])).json
    real = _ok(cli("--output", "json", *args)).json
    assert (dry["dry_run"], real["dry_run"]) == (True, False)
    assert dry["changed"] is True, dry
    assert _plan(dry) == _plan(real)
    assert _file_plan(dry) == _file_plan(real)
    assert dry["warnings"] == real["warnings"]
    return real


def test_a_dry_run_plans_what_the_ensure_commands_and_create_cf_template_do(
    cli: Any, tmp_path: Path
) -> None:
    """ensure-transactor, ensure-cf and create-cf-template, first creating then updating: the
    real run's changes and file lines are the dry run's."""
    folder = _folder(tmp_path)
    done = _same_plan_as_dry_run(cli, "ensure-transactor", str(folder.transactor))
    assert {c["action"] for c in done["changes"]} == {"create"}
    done = _same_plan_as_dry_run(cli, "ensure-cf", str(folder.cf))
    assert [c["action"] for c in done["changes"]] == ["noop", "create"]
    template = ("create-cf-template", str(folder.transactor), str(folder.cf), str(folder.template))
    _same_plan_as_dry_run(cli, *template)

    folder.edit(folder.transactor, **{"memory-index-max=512m": "memory-index-max=600m"})
    done = _same_plan_as_dry_run(cli, "ensure-transactor", str(folder.transactor))
    assert [c["action"] for c in done["changes"]].count("update") == 1, done["changes"]
    folder.edit(folder.cf, **{"=172.31.0.0/16": "=172.31.0.0/16,10.1.0.0/16"})
    done = _same_plan_as_dry_run(cli, "ensure-cf", str(folder.cf))
    assert [c["action"] for c in done["changes"]] == ["noop", "update"]
    _same_plan_as_dry_run(cli, *template)


def test_a_dry_run_plans_what_create_cf_stack_does(cli: Any, tmp_path: Path) -> None:
    folder = _prepared(cli, tmp_path)
    done = _same_plan_as_dry_run(cli, "create-cf-stack", REGION, STACK, str(folder.template), *FAST)
    assert (f"stack/{STACK}", "create") in [(c["resource"], c["action"]) for c in done["changes"]]


def test_a_dry_run_plans_what_delete_cf_stack_does(cli: Any, tmp_path: Path) -> None:
    _created(cli, tmp_path)
    done = _same_plan_as_dry_run(cli, "delete-cf-stack", REGION, STACK, "--yes", *FAST)
    assert [(c["resource"], c["action"]) for c in done["changes"]] == [(f"stack/{STACK}", "delete")]


def test_a_noop_apply_reads_the_stack_once(cli: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    _ok(cli("apply", str(folder.path), *FAST))
    noop = _ok(cli("--output", "json", "apply", str(folder.path), *FAST)).json
    assert noop["changed"] is False
    assert noop["aws_calls"]["by_operation"]["cloudformation:DescribeStacks"] == 1
