"""Every command's --help: a one-line summary, its arguments explained, an example.

The commands are enumerated from the click group itself, so a new command without such help fails
here. The top-level --help goes through the real `datomic-aws` process.
"""

from __future__ import annotations

import subprocess

import click
import pytest
from click.testing import CliRunner

from datomic_aws.cli import cli
from tests.cli.fixtures import command_line

COMMANDS = sorted(cli.commands)


def help_of(name: str) -> str:
    result = CliRunner().invoke(cli, [name, "--help"], prog_name="datomic-aws")
    assert result.exit_code == 0, result.output
    return result.output


def test_the_group_has_the_commands_of_the_design() -> None:
    assert set(COMMANDS) >= {
        "ensure-transactor",
        "ensure-cf",
        "create-cf-template",
        "create-cf-stack",
        "update-stack",
        "delete-cf-stack",
        "status",
        "apply",
        "demo",
    }


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_help_has_a_summary_its_arguments_and_an_example(name: str) -> None:
    command = cli.commands[name]
    # CliRunner renders for an 80-column terminal, as a pipe or a small window would.
    paragraphs = [p.splitlines() for p in help_of(name).split("\n\n") if p.strip()]
    usage = " ".join(line.strip() for line in paragraphs[0])
    assert usage.startswith(f"Usage: datomic-aws {name} "), usage

    # A one-line summary: one sentence that fits the line.
    summary = paragraphs[1]
    assert len(summary) == 1, f"{name}: the summary takes {len(summary)} lines: {summary}"
    assert summary[0].strip().endswith("."), f"{name}: {summary[0]!r} is not a sentence"
    assert len(summary[0].strip()) >= 20, summary

    # Every argument is in the usage line and explained in the text.
    text = "\n".join(line for p in paragraphs[1:] for line in p)
    for param in command.params:
        if isinstance(param, click.Argument):
            metavar = (param.metavar or param.name or "").upper().strip("[]")
            assert metavar in usage, f"{name}: {metavar} missing from {usage!r}"
            assert metavar in text, f"{name}: {metavar} is not explained in the help text"

    # An Example: block, with at least one line that runs this very command.
    blocks = [p for p in paragraphs if p[0].strip() == "Example:"]
    assert blocks, f"{name}: no 'Example:' block"
    runs = [line.split() for line in blocks[0][1:]]
    assert any(r[:2] == ["datomic-aws", name] for r in runs), (
        f"{name}: no `datomic-aws {name} ...` line in the example: {blocks[0]}"
    )


# The order of the operator's loop (issue 13, "commands listed in the order of the operator loop").
LOOP = [
    "ensure-transactor",
    "ensure-cf",
    "create-cf-template",
    "create-cf-stack",
    "update-stack",
    "apply",
    "status",
    "delete-cf-stack",
    "demo",
    "sandbox",
    "completion",
]


def test_top_level_help_lists_every_command_in_the_loop_order_with_its_whole_summary() -> None:
    proc = subprocess.run(
        [*command_line(), "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split("Commands:", 1)[1].split("\n\n", 1)[0].splitlines()
    # A row starts two spaces in; a summary wider than the screen goes on under itself.
    rows: list[list[str]] = []
    for line in listed:
        if line.startswith("  ") and not line.startswith("   "):
            name, _, text = line.strip().partition(" ")
            rows.append([name, text.strip()])
        elif line.strip():
            rows[-1][1] += " " + line.strip()
    assert [name for name, _ in rows] == LOOP
    assert set(LOOP) == set(COMMANDS)
    for name, summary in rows:
        assert summary, f"{name} is listed without a summary"
        # The whole first line of its help, never cut ("...").
        assert summary == (cli.commands[name].help or "").strip().splitlines()[0], name
