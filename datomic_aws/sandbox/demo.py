"""The demo: the operator's loop run against the embedded AWS (moto) on 127.0.0.1, with emulated
transactors.

Owns copying the packaged samples into the demo folder, the demo's own edits of them (the log
bucket on, a short heartbeat), two rolls measured the same way (the default surge, then Datomic's
old way, terminate first) and narrating each step and the measured availability of both, side by
side, through the `out` / `err` callbacks (with `--output json`: one JSON document, written once at
the end). The demo folder is a git repository with one commit per step, so that `git log -p` tells
the story (without git, the demo says so and goes on). The embedded AWS itself (server, masked
credentials, transactors, probe) is `datomic_aws.sandbox.embedded`. It never talks to real AWS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datomic_aws.aws import AwsContext
from datomic_aws.changes import Result
from datomic_aws.errors import UsageError
from datomic_aws.sandbox.probe import Summary

if TYPE_CHECKING:
    from datomic_aws.replace import Strategy
    from datomic_aws.sandbox.embedded import EmbeddedAws

Say = Callable[[str], None]
Calls = dict[str, Any]
# A short heartbeat keeps the demo fast: a standby takes over after two missed heartbeats
# (reference §10), so the worst case is 2 x 0.5 s + 1 s.
DEMO_HEARTBEAT_MSEC = 500
# The emulated boot (install, download, JVM start) is many heartbeats long, as on AWS (minutes
# against 5 s): what a terminate-first roll costs, and a surge hides, is a boot.
DEMO_BOOT_SECONDS = 3.0


def copy_samples(directory: Path) -> dict[str, Path]:
    """The samples into a new or empty folder: `--dir aws/prod` must never overwrite an
    operator's files (or an earlier demo's), so anything already there is refused first."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UsageError(
            "the demo folder must be new or empty: the demo writes its own transactor.properties, "
            "cf.properties and cf.json there",
            str(directory),
            "give --dir a folder that does not exist yet (or leave --dir out for a temporary one)",
        )
    directory.mkdir(parents=True, exist_ok=True)
    samples = resources.files("datomic_aws.config_samples")
    copied = {}
    for name in ("transactor.properties", "cf.properties"):
        source = samples.joinpath(name)
        if source.is_file():
            target = directory / name
            target.write_bytes(source.read_bytes())
            copied[name] = target
    return copied


def _enable_demo_options(path: Path) -> None:
    """The demo turns on the optional log bucket so that every resource kind is shown, and
    shortens the transactors' heartbeat through their configuration, as an operator could."""
    _edit(path, "# aws-s3-log-bucket-id=", "aws-s3-log-bucket-id=")
    _edit(path, "# heartbeat-interval-msec=5000", f"heartbeat-interval-msec={DEMO_HEARTBEAT_MSEC}")


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="latin-1")
    if old not in text:
        raise UsageError(f"the demo sample has no {old!r}", str(path), "please report this")
    path.write_text(text.replace(old, new, 1), encoding="latin-1")


class _Repository:
    """The demo folder as a git repository: one commit per step, so `git log -p` tells the story.
    Without git, or when git fails, the demo says so once and goes on without it."""

    FILES = ("transactor.properties", "cf.properties", "cf.json")

    def __init__(self, folder: Path, err: Say) -> None:
        self.folder = folder
        self.err = err
        self.git = shutil.which("git")
        self.ok = self.git is not None
        if self.git is None:
            err("git is not installed: the demo folder will not be a git repository.")
        elif not self._git("init", "-q"):
            self._failed("git init")

    def commit(self, message: str) -> None:
        """Commit the demo's files as they are now (an empty commit when nothing changed)."""
        if not self.ok:
            return
        files = [name for name in self.FILES if (self.folder / name).exists()]
        if not (self._git("add", "--", *files) and self._git("commit", "-q", "--allow-empty",
                                                              "-m", message)):  # fmt: skip
            self._failed("git commit")

    def _failed(self, what: str) -> None:
        self.ok = False
        self.err(f"{what} failed in {self.folder}: the demo goes on without the git repository.")

    def _git(self, *args: str) -> bool:
        # The operator's GIT_DIR and the like would point git at another repository.
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        config = ("user.name=datomic-aws demo", "user.email=demo@datomic-aws.invalid",
                  "commit.gpgsign=false", "core.hooksPath=/dev/null")  # fmt: skip
        command = [str(self.git), "-C", str(self.folder)]
        for item in config:
            command += ["-c", item]
        try:
            proc = subprocess.run([*command, *args], capture_output=True, env=env, check=False,
                                  stdin=subprocess.DEVNULL, timeout=60)  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return False
        return proc.returncode == 0


def _instance_type(path: Path) -> str:
    from datomic_aws.properties import PropertiesText

    return PropertiesText.load(path).get("aws-instance-type") or ""


def worst_case_gap(heartbeat_msec: int) -> float:
    """Datomic's worst-case peer recovery: 2 x heartbeat + 1 s (reference §10)."""
    return 2 * heartbeat_msec / 1000 + 1


def _wait_until_serving(aws: EmbeddedAws, region: str, system: str, group: str) -> None:
    """As an operator would, start the roll once the first transactor is up: active for a peer,
    its instance InService (read through the one InService poller)."""
    from datomic_aws.sandbox.probe import InServicePoller

    deadline = time.monotonic() + 30
    with InServicePoller(aws.endpoint, region, group, interval=0.05) as poller:
        while time.monotonic() < deadline:
            latest = poller.latest
            if latest and latest.in_service and aws.probe.live_active(system) is not None:
                return
            time.sleep(0.05)


@dataclass(frozen=True)
class Roll:
    """One roll as the demo measured it: the apply's result, the probe's summary (a peer's view)
    and the InService counts the poller saw."""

    strategy: str
    result: Result
    summary: Summary
    in_service: tuple[int, ...]

    @property
    def floor(self) -> int | None:
        return min(self.in_service) if self.in_service else None

    @property
    def replaced(self) -> bool:
        return any(c.resource.startswith("ec2 instance") and c.changed for c in self.result.changes)


def _next_type(current: str) -> str:
    return "m7i.xlarge" if current != "m7i.xlarge" else "m7i.2xlarge"


def comparison(surge: Roll, terminate: Roll, bound: float) -> list[str]:
    """The two rolls side by side, in the probe's terms."""

    def gap(roll: Roll) -> str:
        return f"{roll.summary.longest_gap:.2f} s"

    def floor(roll: Roll) -> str:
        return "?" if roll.floor is None else str(roll.floor)

    rows = [
        ("", "surge (default)", "terminate (old way)"),
        ("longest interval without an active", gap(surge), gap(terminate)),
        ("failovers", str(surge.summary.failovers), str(terminate.summary.failovers)),
        (
            "lost takeover races",
            str(surge.summary.race_losses),
            str(terminate.summary.race_losses),
        ),
        ("InService floor", floor(surge), floor(terminate)),
    ]
    lines = [f"   {a:<36} {b:<17} {c}".rstrip() for a, b, c in rows]
    return [
        f"Surge versus Datomic's old way (terminate, then boot the replacement), as a peer saw "
        f"each roll (Datomic's bound 2 x heartbeat + 1 s = {bound:.1f} s):",
        *lines,
    ]


class _Demo:
    """The demo's steps against one embedded AWS: each apply narrated, each roll measured."""

    def __init__(
        self, folder: Path, aws: EmbeddedAws, repo: _Repository, *, out: Say, err: Say, wait: Say
    ) -> None:
        from datomic_aws.stack import Waiting

        self.folder = folder
        self.cf = folder / "cf.properties"
        self.aws = aws
        self.repo = repo
        self.out = out
        self.err = err
        self.waiting = Waiting(poll_interval=0.2, heartbeat_interval=30, on_event=wait)
        # With --output json, each apply's document, gathered into the demo's one document.
        self.steps: list[dict[str, Any]] | None = None

    def apply(self, title: str, strategy: Strategy = "surge") -> tuple[Result, dict[str, Any]]:
        from datomic_aws import render
        from datomic_aws.deploy import Replacement, apply_dir

        self.err(f"\n== {title}")
        ctx = AwsContext(endpoint_url=self.aws.endpoint)
        result = apply_dir(
            ctx, self.folder, waiting=self.waiting, replacement=Replacement(strategy=strategy)
        )
        calls = ctx.call_log.as_dict()
        if self.steps is None:
            self.out(render.to_text(result, calls).rstrip("\n"))
        else:
            self.steps.append({"step": title, **json.loads(render.to_json(result, calls))})
        self.repo.commit(title)
        return result, calls

    def roll(self, first: Result, title: str, strategy: Strategy, note: str) -> Roll:
        """Edit the instance type, then apply while a peer (the probe) and the poller watch."""
        from datomic_aws import names
        from datomic_aws.sandbox.probe import InServicePoller

        system = str(first.extra.get("system", ""))
        region = str(first.extra.get("region", "us-east-1"))
        group = names.autoscaling_group(system)
        old_type = _instance_type(self.cf)
        new_type = _next_type(old_type)
        _edit(self.cf, f"aws-instance-type={old_type}", f"aws-instance-type={new_type}")
        edit = f"the operator edits cf.properties: aws-instance-type={old_type} -> {new_type}"
        self.err(f"\n   ({edit}{note})")
        self.repo.commit(edit)
        _wait_until_serving(self.aws, region, system, group)
        self.aws.probe.clear()
        with InServicePoller(self.aws.endpoint, region, group) as poller:
            result, _ = self.apply(title, strategy)
            # The standby takes over only after two missed heartbeats: let the probe see it.
            deadline = time.monotonic() + worst_case_gap(DEMO_HEARTBEAT_MSEC) + 1
            while time.monotonic() < deadline and self.aws.probe.summary().failovers == 0:
                time.sleep(0.05)
            time.sleep(0.2)
        return Roll(strategy, result, self.aws.probe.summary(), tuple(poller.in_service))


def _converged(first: Result, surge: Roll, terminate: Roll, third: Result, calls: Calls) -> bool:
    roll = surge.summary
    low = surge.floor
    return bool(
        first.pending
        and surge.replaced
        and terminate.replaced
        and not third.pending
        and calls["mutating"] == 0
        and low is not None
        and low >= 1
        and roll.race_losses == 0
        and roll.failovers <= 1
        and roll.longest_gap <= worst_case_gap(DEMO_HEARTBEAT_MSEC)
    )


def _availability(surge: Roll, terminate: Roll, calls: Calls) -> list[str]:
    """The closing narration: the surge roll as a peer saw it, then both rolls side by side."""
    roll = surge.summary
    bound = worst_case_gap(DEMO_HEARTBEAT_MSEC)
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(roll.exit_reasons.items()))
    return [
        f"\nAvailability of the roll, as a peer saw it ({roll.samples} samples): the longest "
        f"interval without an active transactor was {roll.longest_gap:.2f} s (total "
        f"{roll.total_gap:.2f} s; Datomic's bound 2 x heartbeat + 1 s = {bound:.1f} s), "
        f"{roll.failovers} failover(s), {roll.exits} transactor exit(s)"
        f"{f' ({reasons})' if reasons else ''}, {roll.race_losses} lost takeover race(s).",
        f"InService floor: during the update the group never had fewer than {surge.floor} "
        f"transactor(s) in service ({len(surge.in_service)} samples); the no-op run made "
        f"{calls['total']} AWS calls, none of them writes.",
        *comparison(surge, terminate, bound),
    ]


def run_demo(
    directory: str | None,
    *,
    out: Say,
    err: Say,
    wait: Say | None = None,
    json_output: bool = False,
) -> int:
    """The demo; `wait` takes the lines of every wait (stack events, replacement steps)."""
    from datomic_aws.sandbox.embedded import embedded_aws
    from datomic_aws.sandbox.transactors import Settings

    folder = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="datomic-aws-demo-"))
    started = time.monotonic()
    files = copy_samples(folder)
    repo = _Repository(folder, err)
    repo.commit("the samples datomic-aws ships (config_samples/)")
    _enable_demo_options(files["transactor.properties"])
    repo.commit("the demo's options: the log bucket on, a 500 ms heartbeat")
    with embedded_aws(transactors=True, settings=Settings(boot_seconds=DEMO_BOOT_SECONDS)) as aws:
        say_wait = wait or (lambda m: err(f"   {m}"))
        demo = _Demo(folder, aws, repo, out=out, err=err, wait=say_wait)
        demo.steps = [] if json_output else None
        err(
            f"Embedded AWS (moto) listening on {aws.endpoint}, every instance running an emulated "
            f"transactor (heartbeat {DEMO_HEARTBEAT_MSEC} ms, boot {DEMO_BOOT_SECONDS:g} s); "
            f"demo folder {folder}"
        )
        first, surge, terminate, third, third_calls = _steps(demo, folder)
    ok = _converged(first, surge, terminate, third, third_calls)
    for line in _availability(surge, terminate, third_calls):
        err(line)
    seconds = time.monotonic() - started
    err(f"{seconds:.1f} s in all.")
    story = f"a git repository with one commit per step: git -C {folder} log -p"
    err(
        f"Done. The files are in {folder}, {story if repo.ok else 'not a git repository'}; the "
        "embedded AWS is gone."
        if ok
        else "\nThe demo did not converge: see the output above."
    )
    if demo.steps is not None:
        doc = {"command": "demo", "folder": str(folder), "converged": ok, "git": repo.ok,
               "seconds": round(seconds, 1), "steps": demo.steps}  # fmt: skip
        out(json.dumps(doc, indent=2, sort_keys=True))
    return 0 if ok else 1


def _steps(demo: _Demo, folder: Path) -> tuple[Result, Roll, Roll, Result, Calls]:
    """Create, roll the surge way, roll the old way, then a no-op."""
    first, _ = demo.apply(
        f"apply {folder}: table, roles, bucket, configuration, security group, template, stack"
    )
    surge = demo.roll(
        first, "apply again: update the stack, surge-replace the transactor", "surge", ""
    )
    terminate = demo.roll(
        first,
        "apply --strategy terminate: Datomic's old way, for comparison",
        "terminate",
        "; this time replaced the old way, terminate first",
    )
    third, third_calls = demo.apply("apply once more: nothing to do")
    return first, surge, terminate, third, third_calls
