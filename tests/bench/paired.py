"""The benchmark's side-by-side no-op: `datomic-aws apply` against
`aws cloudformation deploy --no-fail-on-empty-changeset` on the same stack, the same template and
the same moto server, run alternately in pairs (tools/measure_help.py `alternate`).

Finds the AWS CLI (v1, the `awscli` package of the `bench` extra): `$DATOMIC_AWS_BENCH_AWS_CLI`,
else the `aws` next to this Python, else `aws` on PATH. When there is none, or it does not answer
"No changes to deploy", the comparison is reported as not measured (and its goal fails): never
skipped silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measure_help import Paired, alternate

AWS_CLI_ENV = "DATOMIC_AWS_BENCH_AWS_CLI"
NO_CHANGES = "No changes to deploy"


def find_aws_cli() -> str | None:
    named = os.environ.get(AWS_CLI_ENV)
    if named:
        return named if Path(named).exists() else None
    beside = Path(sys.executable).parent / "aws"
    if beside.exists():
        return str(beside)
    return shutil.which("aws")


@dataclass(frozen=True)
class NoopComparison:
    aws_cli: str  # the program's name and `aws --version`, or what was missing
    paired: Paired | None  # None: not measured (`error` says why)
    error: str = ""


def aws_version(aws: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [aws, "--version"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    return (proc.stdout or proc.stderr).strip().splitlines()[0] if proc.returncode == 0 else ""


def deploy_command(aws: str, endpoint: str, region: str, stack: str, template: Path) -> list[str]:
    return [
        aws,
        "--endpoint-url",
        endpoint,
        "--region",
        region,
        "cloudformation",
        "deploy",
        "--stack-name",
        stack,
        "--template-file",
        str(template),
        "--no-fail-on-empty-changeset",
    ]


def run_deploy(cmd: list[str], env: dict[str, str]) -> float:
    """One no-op `aws cloudformation deploy`; its wall time. Fails unless it found no change."""
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=600
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or NO_CHANGES not in proc.stdout:
        raise RuntimeError(
            f"aws cloudformation deploy exited {proc.returncode} without {NO_CHANGES!r}:\n"
            f"{proc.stdout[-1500:]}{proc.stderr[-1500:]}"
        )
    return seconds


def compare_noop(
    ours: Any,
    env: dict[str, str],
    endpoint: str,
    region: str,
    stack: str,
    template: Path,
    pairs: int,
) -> NoopComparison:
    """`ours()` runs a no-op apply and returns its wall time (failing unless it was a no-op)."""
    aws = find_aws_cli()
    if aws is None:
        named = os.environ.get(AWS_CLI_ENV)
        where = f"${AWS_CLI_ENV}={named} does not exist" if named else "no `aws` found"
        return NoopComparison(
            f"not installed ({where}; pip install awscli, the `bench` extra)",
            None,
            "the AWS CLI is not installed",
        )
    version = aws_version(aws, env)
    # The program's name, not its path: the report is committed, and a path is this machine's.
    label = f"{os.path.basename(aws)} ({version or 'aws --version failed'})"
    cmd = deploy_command(aws, endpoint, region, stack, template)
    try:
        ours(), run_deploy(cmd, env)  # warm-up, and both are shown to be no-ops
        return NoopComparison(label, alternate(ours, lambda: run_deploy(cmd, env), pairs))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return NoopComparison(label, None, str(exc))
