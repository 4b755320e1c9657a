"""apply DIR DIR...: several environment folders side by side, end to end on the embedded AWS.

Three folders from the samples (three systems); one has an invalid value. The other two converge,
the summary names the failure, exit 2, and the invalid folder is left as it was; a rerun is a
no-op for the two (no mutating call, files byte-identical) and still exit 2; fixed, the third
converges. Few processes: one CLI run per step.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from datomic_aws import config_samples
from datomic_aws.locking import LOCK_NAME

SAMPLES = Path(config_samples.__file__).parent
FAST = ("--poll-interval", "0.1")
BAD = "aws-autoscaling-group-size=many"


def _folder(root: Path, name: str, *, bad: bool = False) -> Path:
    folder = root / name
    folder.mkdir()
    for file in ("transactor.properties", "cf.properties"):
        shutil.copyfile(SAMPLES / file, folder / file)
    _edit(folder / "transactor.properties", "aws-dynamodb-table=my-datomic-system",
          f"aws-dynamodb-table=fleet-{name}")  # fmt: skip
    if bad:
        _edit(folder / "cf.properties", "aws-autoscaling-group-size=1", BAD)
    return folder


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """The folder's files (the lock file is the run's own: each run rewrites its pid)."""
    files = (p for p in sorted(folder.iterdir()) if p.name != LOCK_NAME)
    return {p.name: (p.read_bytes(), os.stat(p).st_mtime_ns) for p in files}


def _by_folder(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {Path(f["folder"]).name: f for f in doc["folders"]}


def test_three_folders_one_invalid_then_a_noop_rerun_then_fixed(
    cli: Any, boto: Any, tmp_path: Path
) -> None:
    a, b, c = (_folder(tmp_path, n, bad=n == "c") for n in "abc")
    invalid = _snapshot(c)
    first = cli("--output", "json", "apply", str(a), str(b), str(c), *FAST, timeout=300)
    assert first.code == 2, first.stderr
    doc = first.json
    assert doc["command"] == "apply" and doc["exit_code"] == 2
    runs = _by_folder(doc)
    assert list(runs) == ["a", "b", "c"]
    for name in "ab":
        assert runs[name]["exit_code"] == 0, runs[name]
        assert runs[name]["outcome"].startswith("changed "), runs[name]["outcome"]
        assert runs[name]["system"] == f"fleet-{name}"
        assert runs[name]["result"]["changed"] is True
        stack = boto("cloudformation").describe_stacks(StackName=runs[name]["result"]["stack"])
        assert stack["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    assert runs["c"]["exit_code"] == 2 and "result" not in runs["c"]
    assert "aws-autoscaling-group-size" in runs["c"]["outcome"], runs["c"]["outcome"]
    assert runs["c"]["aws_calls"]["total"] == 0
    assert _snapshot(c) == invalid and not (c / LOCK_NAME).exists()  # validate-first
    assert re.search(rf"{re.escape(str(c))}: Error: aws-autoscaling-group-size", first.stderr)
    # Account-level reads asked once for the three folders (one account, one region).
    assert doc["shared_reads"]["sts:GetCallerIdentity"] == 1, doc["shared_reads"]
    assert doc["aws_calls"]["by_operation"]["sts:GetCallerIdentity"] == 1
    assert doc["aws_calls"]["by_operation"]["ec2:DescribeVpcs"] == 1
    # Progress lines carry their folder.
    assert re.search(rf"\] {re.escape(str(a))}: .*AWS::", first.stderr), first.stderr

    before = {n: _snapshot(f) for n, f in (("a", a), ("b", b), ("c", c))}
    second = cli("apply", "--jobs", "2", str(a), str(b), str(c), *FAST, timeout=300)
    assert second.code == 2, second.stderr
    rows = {line.split()[0]: line for line in second.stdout.splitlines() if line.strip()}
    for folder, system in ((a, "fleet-a"), (b, "fleet-b")):
        assert re.match(rf"{re.escape(str(folder))}\s+{system}\s+no change\s+\d+ \(0 mutating\)$",
                        rows[str(folder)]), rows[str(folder)]  # fmt: skip
    assert re.match(rf"{re.escape(str(c))}\s+-\s+failed: aws-autoscaling-group-size",
                    rows[str(c)]), rows[str(c)]  # fmt: skip
    assert "3 folders: 2 converged, 1 failed." in second.stdout
    assert {n: _snapshot(f) for n, f in (("a", a), ("b", b), ("c", c))} == before

    _edit(c / "cf.properties", BAD, "aws-autoscaling-group-size=1")
    third = cli("--output", "json", "apply", str(a), str(b), str(c), *FAST, timeout=300)
    assert third.code == 0, third.stderr
    runs = _by_folder(third.json)
    assert runs["c"]["outcome"].startswith("changed ") and runs["c"]["exit_code"] == 0
    for name in "ab":
        assert runs[name]["outcome"] == "no change"
        assert runs[name]["aws_calls"]["mutating"] == 0, runs[name]["aws_calls"]
    assert (c / "cf.json").exists()


def test_two_folders_naming_one_system_are_refused_before_any_call(
    cli: Any, tmp_path: Path
) -> None:
    a, b = _folder(tmp_path, "a"), _folder(tmp_path, "b")
    _edit(b / "transactor.properties", "aws-dynamodb-table=fleet-b", "aws-dynamodb-table=fleet-a")
    before = (_snapshot(a), _snapshot(b))
    run = cli("--output", "json", "apply", str(a), str(b))
    assert run.code == 2, run.stderr
    assert f"folders {a} and {b} both name system fleet-a" in run.stderr
    assert "aws_calls" not in run.json
    assert (_snapshot(a), _snapshot(b)) == before
