"""Emulated transactors on the embedded AWS (a server in its own process, tests/moto_server.py
--transactors): Datomic's HA protocol (reference §10), the launch lifecycle by the boot script's
rule, role tags, faults, the probe, and reset."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from datomic_aws import names
from datomic_aws.config.transactor import value_digest
from datomic_aws.sandbox.demo import DEMO_HEARTBEAT_MSEC
from datomic_aws.sandbox.transactors import (
    CONFIG_REFUSED,
    DIED_AT_START,
    LOST_RACE,
    NEVER_READY,
    TERMINATED,
)
from tests.sandbox.helpers import (
    build_group,
    client,
    ec2_state,
    instances,
    role_tags,
    roles,
    sandbox_config,
    wait_for,
)

HEARTBEAT_MSEC = 400


def bound(heartbeat_msec: int) -> float:
    """Datomic's worst-case recovery: 2 x heartbeat + 1 s (reference §10)."""
    return 2 * heartbeat_msec / 1000 + 1


def steady(endpoint: str, control: Any, size: int) -> dict[str, str | None]:
    """`size` live transactors, one active and the others standby, all InService."""

    def ready() -> dict[str, str | None] | None:
        live = roles(control)
        states = [i["LifecycleState"] for i in instances(endpoint)]
        expected = sorted([names.ROLE_ACTIVE] + [names.ROLE_STANDBY] * (size - 1))
        if sorted(str(r) for r in live.values()) == expected and states == ["InService"] * size:
            return live
        return None

    found: dict[str, str | None] = wait_for(ready, timeout=30)
    return found


def _active(live: dict[str, str | None]) -> str:
    return next(i for i, role in live.items() if role == names.ROLE_ACTIVE)


def test_one_active_one_standby_publish_roles_and_the_standby_takes_over_in_time(
    transactors_endpoint: str, sandbox_control: Any
) -> None:
    endpoint = transactors_endpoint
    build_group(endpoint, 2, HEARTBEAT_MSEC)
    live = steady(endpoint, sandbox_control, 2)
    active = _active(live)
    (standby,) = set(live) - {active}
    # Each instance publishes its role as its own tag; only the active listens.
    wait_for(lambda: role_tags(endpoint) == live)
    listening = {t["instance_id"] for t in sandbox_control.transactors() if t["listening"]}
    assert listening == {active}
    assert all(t["health"] for t in sandbox_control.transactors())

    sandbox_control.clear_probe()
    client(endpoint, "autoscaling").terminate_instance_in_auto_scaling_group(
        InstanceId=active, ShouldDecrementDesiredCapacity=True
    )
    wait_for(lambda: roles(sandbox_control).get(standby) == names.ROLE_ACTIVE, timeout=10)
    wait_for(lambda: role_tags(endpoint).get(standby) == names.ROLE_ACTIVE)
    time.sleep(0.2)

    report = sandbox_control.probe()
    summary = report["summary"]
    assert summary["failovers"] == 1, report
    assert 0 < summary["longest_gap"] <= bound(HEARTBEAT_MSEC), report
    assert summary["race_losses"] == 0
    assert summary["exit_reasons"] == {TERMINATED: 1}
    # The gap and the exit are seen in either order (the probe may notice the instance gone
    # before its transactor records its exit); the standby's takeover ends the gap.
    events = [e["event"] for e in report["timeline"]]
    assert sorted(events[-3:-1]) == ["exit", "gap"] and events[-1] == "active", report


def test_two_standbys_race_for_a_dead_active_exactly_one_wins_the_loser_leaves(
    transactors_endpoint: str, sandbox_control: Any
) -> None:
    endpoint = transactors_endpoint
    heartbeat = 1000  # a takeover tick long enough for both standbys to see the active die
    build_group(endpoint, 3, heartbeat)
    live = steady(endpoint, sandbox_control, 3)
    active = _active(live)
    standbys = set(live) - {active}

    sandbox_control.clear_probe()
    client(endpoint, "autoscaling").terminate_instance_in_auto_scaling_group(
        InstanceId=active, ShouldDecrementDesiredCapacity=True
    )

    def race_over() -> dict[str, Any] | None:
        summary: dict[str, Any] = sandbox_control.probe()["summary"]
        return summary if summary["race_losses"] and summary["failovers"] else None

    summary = wait_for(race_over, timeout=15)
    assert summary["race_losses"] == 1
    assert summary["failovers"] == 1
    assert summary["longest_gap"] <= bound(heartbeat)
    exits = [e for e in sandbox_control.probe()["timeline"] if e["event"] == "exit"]
    (loser,) = [e["instance"] for e in exits if e["reason"] == LOST_RACE]
    assert loser in standbys
    (winner,) = standbys - {loser}
    assert roles(sandbox_control).get(winner) == names.ROLE_ACTIVE
    # The loser's instance powered itself off (terminate) and left the group, which replaced it.
    wait_for(lambda: ec2_state(endpoint, loser) == "terminated")
    wait_for(lambda: loser not in {i["InstanceId"] for i in instances(endpoint)})
    after = steady(endpoint, sandbox_control, 2)
    assert _active(after) == winner


def test_a_new_instance_waits_in_pending_wait_until_its_transactor_answers_health(
    transactors_endpoint: str, sandbox_control: Any
) -> None:
    endpoint = transactors_endpoint
    # Seconds of margin over the 0.7 s look: on a loaded machine building the group alone has
    # taken over 1.5 s.
    sandbox_control.settings(boot_seconds=4)
    build_group(endpoint, 1, HEARTBEAT_MSEC)
    (first,) = instances(endpoint)
    assert first["LifecycleState"] == "Pending:Wait"
    time.sleep(0.7)
    assert [i["LifecycleState"] for i in instances(endpoint)] == ["Pending:Wait"]
    assert role_tags(endpoint) == {}  # booting: no role known yet
    live = steady(endpoint, sandbox_control, 1)
    assert set(live) == {first["InstanceId"]}
    (transactor,) = sandbox_control.transactors()
    assert transactor["lifecycle"] == "CONTINUE"


def test_a_transactor_that_dies_at_start_is_abandoned_and_replaced(
    transactors_endpoint: str, sandbox_control: Any
) -> None:
    endpoint = transactors_endpoint
    sandbox_control.settings(die_at_start=1)
    build_group(endpoint, 1, HEARTBEAT_MSEC)
    (first,) = instances(endpoint)
    live = steady(endpoint, sandbox_control, 1)
    assert first["InstanceId"] not in live
    assert ec2_state(endpoint, first["InstanceId"]) == "terminated"
    dead = [t for t in sandbox_control.transactors() if t["instance_id"] == first["InstanceId"]]
    assert dead[0]["exit"] == DIED_AT_START
    assert dead[0]["lifecycle"] == "ABANDON"
    assert sandbox_control.probe()["summary"]["exit_reasons"] == {DIED_AT_START: 1}


def test_the_pinned_version_boots_and_a_mismatching_digest_is_refused(
    transactors_endpoint: str, sandbox_control: Any
) -> None:
    """As the boot script (issue 10): the version the launch template pins, checked against its
    keyed digest; another digest is refused (ABANDON)."""
    endpoint = transactors_endpoint
    build_group(endpoint, 1, HEARTBEAT_MSEC, pin="1:" + "0" * 64)
    (first,) = instances(endpoint)

    def exited() -> list[dict[str, Any]]:
        return [
            t
            for t in sandbox_control.transactors()
            if t["instance_id"] == first["InstanceId"] and t["exit"]
        ]

    (refused,) = wait_for(exited, "the refusal")
    assert refused["exit"] == CONFIG_REFUSED
    wait_for(lambda: exited()[0]["lifecycle"] == "ABANDON", "the ABANDON")


def test_a_matching_pin_boots(transactors_endpoint: str, sandbox_control: Any) -> None:
    endpoint = transactors_endpoint
    config = sandbox_config(HEARTBEAT_MSEC)
    build_group(endpoint, 1, HEARTBEAT_MSEC, pin=f"1:{value_digest(config, '')}")
    steady(endpoint, sandbox_control, 1)


def test_a_transactor_never_ready_is_abandoned_at_the_deadline(
    transactors_endpoint: str, sandbox_control: Any
) -> None:
    endpoint = transactors_endpoint
    sandbox_control.settings(never_ready=1, ready_deadline=3.0)  # margin over the 0.5 s look
    build_group(endpoint, 1, HEARTBEAT_MSEC)
    (first,) = instances(endpoint)
    time.sleep(0.5)
    assert [i["LifecycleState"] for i in instances(endpoint)] == ["Pending:Wait"]
    live = steady(endpoint, sandbox_control, 1)
    assert first["InstanceId"] not in live
    assert ec2_state(endpoint, first["InstanceId"]) == "terminated"
    assert sandbox_control.probe()["summary"]["exit_reasons"] == {NEVER_READY: 1}


def test_other_protocols_use_an_in_memory_lease(
    transactors_endpoint: str, sandbox_control: Any
) -> None:
    build_group(transactors_endpoint, 2, HEARTBEAT_MSEC, protocol="dev")
    steady(transactors_endpoint, sandbox_control, 2)


def test_reset_stops_every_transactor_clears_the_probe_and_the_faults(
    moto_transactors_endpoint: str, sandbox_control: Any
) -> None:
    endpoint = moto_transactors_endpoint
    build_group(endpoint, 1, HEARTBEAT_MSEC)
    steady(endpoint, sandbox_control, 1)
    sandbox_control.settings(die_at_start=3, boot_seconds=0.5)
    assert sandbox_control.probe()["timeline"]

    sandbox_control.reset()

    assert sandbox_control.transactors() == []
    assert sandbox_control.probe()["timeline"] == []
    settings = sandbox_control.settings()
    assert settings["die_at_start"] == 0
    assert settings["boot_seconds"] == 0.2  # the server's own default again
    groups = client(endpoint, "autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    assert groups == []


def test_the_demo_reports_the_availability_of_the_roll_and_passes(tmp_path: Path) -> None:
    # Its wall time ("under a minute", README) is a speed goal: the benchmark measures it
    # (tests/bench/run.py), a test on a shared machine cannot.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # A machine without git: the demo says so and goes on (no repository, still a pass).
    no_git = tmp_path / "bin"
    no_git.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "datomic_aws", "demo", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PATH": str(no_git), "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "git is not installed: the demo folder will not be a git repository." in proc.stderr
    assert not (tmp_path / "demo" / ".git").exists()
    assert "git init there" not in proc.stderr
    # Every apply's text ends with its AWS call counts; every wait line with the elapsed time.
    assert proc.stdout.count("AWS calls: ") == 4
    waits = [line for line in proc.stderr.splitlines() if "AWS::CloudFormation::Stack" in line]
    assert waits and all(re.match(r"\[\d+:\d\d\] ", line) for line in waits), waits
    assert "Availability of the roll, as a peer saw it" in proc.stderr
    assert "1 failover(s)" in proc.stderr
    assert "0 lost takeover race(s)" in proc.stderr
    assert "InService floor: during the update the group never had fewer than 1" in proc.stderr
    # Beside the surge roll, the same measure of Datomic's old way (terminate first): its gap is
    # about a boot, beyond Datomic's bound, and nothing served while the replacement booted.
    table = _comparison(proc.stderr)
    assert table["failovers"] == ["1", "1"]
    assert table["lost takeover races"] == ["0", "0"]
    assert table["InService floor"] == ["1", "0"]
    surge, terminate = (float(x.split()[0]) for x in table["longest interval without an active"])
    bound = 2 * DEMO_HEARTBEAT_MSEC / 1000 + 1
    # Beyond Datomic's bound is the claim. Not ">= the boot time": Auto Scaling launches the
    # replacement inside the terminate call, so its boot overlaps the old transactor's shutdown
    # and the measured gap can be a little shorter than a boot (2.96 s for a 3 s boot, once in CI).
    assert surge <= bound < terminate, table


def _comparison(stderr: str) -> dict[str, list[str]]:
    lines = stderr.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("Surge versus"))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2 : start + 6]:
        label, rest = line[3:39].strip(), line[39:]
        rows[label] = [rest[:18].strip(), rest[18:].strip()]
    return rows


def test_the_demo_json_output_is_one_document_and_its_folder_tells_the_story_in_git(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.run(
        [sys.executable, "-m", "datomic_aws", "--output", "json", "demo", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Exactly one JSON document (`| python -m json.tool` reads it).
    tool = subprocess.run([sys.executable, "-m", "json.tool"], input=proc.stdout, text=True,
                          capture_output=True, check=False)  # fmt: skip
    assert tool.returncode == 0, tool.stderr
    doc = json.loads(proc.stdout)
    assert doc["command"] == "demo" and doc["converged"] is True and doc["git"] is True
    docs = doc["steps"]
    # create, surge roll, terminate roll, no-op
    assert [d["command"] for d in docs] == ["apply"] * 4
    assert docs[1]["availability"]["min_in_service"] >= 1
    assert docs[2]["availability"]["min_in_service"] == 0
    (surge,) = docs[1]["availability"]["no_active_intervals"]
    (terminate,) = docs[2]["availability"]["no_active_intervals"]
    assert surge < terminate
    assert docs[3]["changed"] is False and docs[3]["aws_calls"]["mutating"] == 0
    # One commit per step, oldest first: `git log -p` tells the story.
    log = subprocess.run(["git", "-C", str(tmp_path), "log", "--reverse", "--format=%s"],
                         capture_output=True, text=True, check=True).stdout.splitlines()  # fmt: skip
    assert log[:2] == [
        "the samples datomic-aws ships (config_samples/)",
        "the demo's options: the log bucket on, a 500 ms heartbeat",
    ]
    assert [line.split(":")[0] for line in log[2:]] == [
        f"apply {tmp_path}",
        "the operator edits cf.properties",
        "apply again",
        "the operator edits cf.properties",
        "apply --strategy terminate",
        "apply once more",
    ]
    assert [d["step"] for d in docs] == [log[2], log[4], log[6], log[7]]
    story = subprocess.run(["git", "-C", str(tmp_path), "log", "-p"], capture_output=True,
                           text=True, check=True).stdout  # fmt: skip
    assert "+aws-transactor-role=datomic-" in story  # the names the first apply wrote back
    assert "-aws-instance-type=" in story and "+aws-instance-type=" in story
    status = subprocess.run(["git", "-C", str(tmp_path), "status", "--porcelain"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert status == ""


def test_the_demo_never_writes_into_a_folder_that_holds_files(tmp_path: Path) -> None:
    """`demo --dir aws/prod` by mistake: the operator's files stay as they were, nothing is added."""
    folder = tmp_path / "prod"
    folder.mkdir()
    mine = folder / "transactor.properties"
    mine.write_bytes(b"protocol=ddb\naws-dynamodb-table=prod\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.run(
        [sys.executable, "-m", "datomic_aws", "demo", "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "the demo folder must be new or empty" in proc.stderr
    assert mine.read_bytes() == b"protocol=ddb\naws-dynamodb-table=prod\n"
    assert [p.name for p in folder.iterdir()] == ["transactor.properties"]
