"""Never touch a stack that is not ours (issue 9), through the real process against a moto server.

- An unrelated, untagged stack that happens to be named `datomic-<system>` survives apply,
  update-stack and delete-cf-stack: exit 1, one line naming the stack and its tags, zero mutating
  calls (counted by the proxy between the process and moto), its resources intact. `apply --adopt`
  takes it over and says so; a rerun is a no-op.
- A stack, or its Auto Scaling group, tagged for another system is refused by all three, also with
  --adopt.
- A stack shaped like the one Datomic's bin/datomic made (tests/datomic_era.py) is refused without
  --adopt with a hint, and migrated by `update-stack --adopt`: the new group's transactor is
  InService before the old LaunchGroup goes (a poller thread records both groups); a rerun is a
  no-op.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from datomic_aws import names
from datomic_aws.sandbox.probe import InServicePoller, InServiceSample
from tests.cli.fixtures import Proxy
from tests.datomic_era import create_datomic_stack

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"
REGION = "us-east-1"
SYSTEM = "my-datomic-system"
STACK = f"datomic-{SYSTEM}"
GROUP = f"datomic-{SYSTEM}-transactors"
FAST = ("--poll-interval", "0.1")
TOPIC = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "orders"}}}}


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "env"
    folder.mkdir()
    for name in ("transactor.properties", "cf.properties"):
        shutil.copyfile(SAMPLES / name, folder / name)
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    """The operator's files (the folder lock is not one of them)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def _ok(run: Any) -> Any:
    assert run.code == 0, (run.stdout, run.stderr)
    return run


def _prepared(cli: Any, folder: Path) -> Path:
    """ensure-transactor, ensure-cf and create-cf-template: a template for the stack commands."""
    t, cf, out = folder / "transactor.properties", folder / "cf.properties", folder / "cf.json"
    _ok(cli("ensure-transactor", str(t)))
    _ok(cli("ensure-cf", str(cf)))
    _ok(cli("create-cf-template", str(t), str(cf), str(out)))
    return out


def _refused(run: Any, *expected: str) -> str:
    assert run.code == 1, (run.stdout, run.stderr)
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, run.stderr
    assert "Traceback" not in run.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    return str(errors[0])


def _stack(boto: Any) -> dict[str, Any]:
    (found,) = boto("cloudformation").describe_stacks(StackName=STACK)["Stacks"]
    return dict(found)


def _topics(boto: Any) -> list[str]:
    return [t["TopicArn"].rsplit(":", 1)[1] for t in boto("sns").list_topics()["Topics"]]


def test_an_unrelated_stack_named_like_ours_survives_then_apply_adopt_takes_it_over(
    cli: Any, boto: Any, proxy: Proxy, tmp_path: Path
) -> None:
    boto("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(TOPIC))
    folder = _folder(tmp_path)
    before = _files(folder)
    via = {"AWS_ENDPOINT_URL": proxy.url}
    untagged = (f"stack {STACK} is not managed by datomic-aws (tags: no tags)", f"{REGION} {STACK}")

    line = _refused(cli("apply", str(folder), *FAST, env=via), *untagged)
    assert "--adopt" in line
    assert proxy.mutating() == [], proxy.requests
    assert _files(folder) == before  # refused before ensure-transactor wrote anything

    template = _prepared(cli, folder)
    proxy.requests.clear()
    _refused(cli("update-stack", REGION, STACK, str(template), *FAST, env=via), *untagged)
    _refused(cli("update-stack", "--dry-run", REGION, STACK, str(template), env=via), *untagged)
    line = _refused(cli("delete-cf-stack", REGION, STACK, "--yes", *FAST, env=via), *untagged)
    assert "delete-cf-stack deletes only the stacks datomic-aws manages" in line
    assert proxy.mutating() == [], proxy.requests
    assert proxy.requests  # the refusals did read AWS
    stack = _stack(boto)
    assert (stack["StackStatus"], stack.get("Tags", [])) == ("CREATE_COMPLETE", [])
    assert _topics(boto) == ["orders"]

    # --adopt: the change set is shown, then the stack is ours.
    run = _ok(cli("--output", "json", "apply", "--adopt", str(folder), *FAST))
    doc = run.json
    head = next(c for c in doc["changes"] if c["resource"] == f"stack/{STACK}")
    assert head["action"] == "update"
    assert f"adopted: the stack had no tags; now tagged for system {SYSTEM}" in head["details"]
    actions = {c["resource"]: c["action"] for c in doc["changes"]}
    assert actions[f"stack/{STACK}/Topic"] == "delete"
    assert actions[f"stack/{STACK}/AutoScalingGroup"] == "create"
    assert f"change set of stack {STACK} (untagged):" in run.stderr
    assert f"delete stack/{STACK}/Topic AWS::SNS::Topic" in run.stderr
    stack = _stack(boto)
    assert names.is_ours({t["Key"]: t["Value"] for t in stack["Tags"]}, SYSTEM)
    assert stack["EnableTerminationProtection"] is True

    again = _ok(cli("--output", "json", "apply", str(folder), *FAST))
    assert again.json["changed"] is False
    assert again.json["aws_calls"]["mutating"] == 0, again.json["aws_calls"]


def test_a_stack_or_group_tagged_for_another_system_is_refused_even_with_adopt(
    cli: Any, boto: Any, proxy: Proxy, tmp_path: Path
) -> None:
    cfn = boto("cloudformation")
    cfn.create_stack(
        StackName=STACK, TemplateBody=json.dumps(TOPIC), Tags=names.tag_list("billing")
    )
    folder = _folder(tmp_path)
    before = _files(folder)
    via = {"AWS_ENDPOINT_URL": proxy.url}
    foreign = (f"stack {STACK} belongs to another system", "datomic:system=billing")

    line = _refused(cli("apply", "--adopt", str(folder), *FAST, env=via), *foreign)
    assert "not even with --adopt" in line
    assert proxy.mutating() == [], proxy.requests
    assert _files(folder) == before
    template = _prepared(cli, folder)
    proxy.requests.clear()
    _refused(cli("update-stack", "--adopt", REGION, STACK, str(template), *FAST, env=via), *foreign)
    _refused(cli("delete-cf-stack", REGION, STACK, "--yes", *FAST, env=via), *foreign)
    assert proxy.mutating() == [], proxy.requests
    assert _stack(boto)["StackStatus"] == "CREATE_COMPLETE"
    assert _topics(boto) == ["orders"]

    # Our own stack whose group was tagged for another system: refused before any write too.
    cfn.delete_stack(StackName=STACK)
    _ok(cli("create-cf-stack", REGION, STACK, str(template), *FAST))
    boto("autoscaling").create_or_update_tags(
        Tags=[
            {
                "ResourceId": GROUP,
                "ResourceType": "auto-scaling-group",
                "Key": names.TAG_SYSTEM,
                "Value": "billing",
                "PropagateAtLaunch": True,
            }
        ]
    )
    edited = json.loads(template.read_text(encoding="utf-8"))
    edited["Description"] += " (edited)"
    template.write_text(json.dumps(edited, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    proxy.requests.clear()
    group = (f"Auto Scaling group {GROUP} of stack {STACK} belongs to another system",)
    _refused(cli("update-stack", "--adopt", REGION, STACK, str(template), *FAST, env=via), *group)
    _refused(cli("delete-cf-stack", REGION, STACK, "--yes", *FAST, env=via), *group)
    _refused(cli("apply", str(folder), *FAST, env=via), *group)
    assert proxy.mutating() == [], proxy.requests


def _old_and_new(poller: InServicePoller, old: str) -> list[tuple[bool, int, int]]:
    """Each read: (old group exists, its InService count, the new group's InService count)."""
    none = InServiceSample(0, 0)
    return [
        (old in seen, seen.get(old, none).in_service, seen.get(GROUP, none).in_service)
        for seen in poller.seen
    ]


def test_a_datomic_era_stack_is_migrated_by_update_stack_adopt_without_a_gap(
    cli: Any, boto: Any, proxy: Proxy, tmp_path: Path, endpoint: str
) -> None:
    old = create_datomic_stack(boto("cloudformation"), boto("ec2"), STACK)
    template = _prepared(cli, _folder(tmp_path))
    via = {"AWS_ENDPOINT_URL": proxy.url}

    line = _refused(
        cli("update-stack", REGION, STACK, str(template), *FAST, env=via),
        f"stack {STACK} was made by Datomic's bin/datomic create-cf-stack",
    )
    assert "rerun with --adopt to migrate it to a launch template" in line
    assert proxy.mutating() == [], proxy.requests

    # The plan: exit 3 with --detailed-exitcode, only the preview change set written and deleted.
    plan = cli(
        "--output",
        "json",
        "update-stack",
        "--adopt",
        "--dry-run",
        "--detailed-exitcode",
        REGION,
        STACK,
        str(template),
    )
    assert plan.code == 3, (plan.stdout, plan.stderr)
    planned = {(c["resource"], c["action"]): c["details"] for c in plan.json["changes"]}
    assert planned[(f"stack/{STACK}/LaunchGroup", "delete")] == [
        "AWS::AutoScaling::AutoScalingGroup",
        "removed once the new group is in service",
    ]
    assert (f"stack/{STACK}/AutoScalingGroup", "create") in planned
    assert plan.json["aws_calls"]["mutating"] == 2, plan.json["aws_calls"]
    assert boto("cloudformation").list_change_sets(StackName=STACK)["Summaries"] == []

    # moto applies each update at once; answering late lets the poller see the state after each.
    proxy.delays["ExecuteChangeSet"] = 0.5
    with InServicePoller(endpoint, REGION, old, GROUP) as poller:
        run = _ok(
            cli(
                "--output",
                "json",
                "update-stack",
                "--adopt",
                REGION,
                STACK,
                str(template),
                *FAST,
                env=via,
            )
        )
    doc = run.json
    head = next(c for c in doc["changes"] if c["resource"] == f"stack/{STACK}")
    assert head["details"][0] == (
        "Datomic bin/datomic stack: LaunchConfiguration -> LaunchTemplate; the group LaunchGroup"
        " is replaced by AutoScalingGroup"
    )
    assert head["details"][1].startswith("adopted: the stack had no tags")
    actions = {(c["resource"], c["action"]) for c in doc["changes"]}
    assert {
        (f"stack/{STACK}/LaunchTemplate", "create"),
        (f"stack/{STACK}/AutoScalingGroup", "create"),
        (f"stack/{STACK}/LaunchGroup", "delete"),
        (f"stack/{STACK}/LaunchConfig", "delete"),
    } <= actions
    assert doc["aws_calls"]["by_operation"]["cloudformation:ExecuteChangeSet"] == 2
    assert f"group {GROUP} is in service; removing LaunchConfig, LaunchGroup" in run.stderr

    samples = _old_and_new(poller, old)
    assert len(samples) > 20
    # Never a moment without an InService transactor; the new one was InService while the old
    # group still ran, and the old group went only after that.
    assert all(old_serving + new_serving >= 1 for _, old_serving, new_serving in samples), samples
    both = [i for i, (exists, o, n) in enumerate(samples) if exists and o >= 1 and n >= 1]
    gone = [i for i, (exists, _, _) in enumerate(samples) if not exists]
    assert both and gone and both[0] < gone[0], samples
    assert samples[0] == (True, 1, 0)
    assert not samples[-1][0] and samples[-1][2] == 1

    stack = _stack(boto)
    assert names.is_ours({t["Key"]: t["Value"] for t in stack["Tags"]}, SYSTEM)
    assert stack["EnableTerminationProtection"] is True
    kinds = {
        r["LogicalResourceId"]
        for r in boto("cloudformation").describe_stack_resources(StackName=STACK)["StackResources"]
    }
    assert kinds == {"LaunchTemplate", "AutoScalingGroup"}

    again = _ok(cli("--output", "json", "update-stack", REGION, STACK, str(template), *FAST))
    assert again.json["changed"] is False
    assert again.json["aws_calls"]["mutating"] == 0, again.json["aws_calls"]
