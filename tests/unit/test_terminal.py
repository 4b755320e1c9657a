"""The CLI's terminal habits without a process: global options anywhere (app/argv.py), the wait
lines and the live line (terminal.py), coloured reports (render.py), the policy diff."""

from __future__ import annotations

import json
import threading

import pytest

from datomic_aws import render
from datomic_aws.app.argv import hoist_global_options
from datomic_aws.changes import Action, Change, FileChange, Result
from datomic_aws.errors import UsageError
from datomic_aws.resources.iam import PutPolicy
from datomic_aws.terminal import Terminal, elapsed, live_progress, use_color

GLOBAL = {"--output": True, "--endpoint-url": True, "--debug": False, "--no-color": False}
VALUES = {"--timeout", "--strategy"}


@pytest.mark.parametrize(
    "args",
    [
        ["--output", "json", "apply", "aws/prod"],
        ["apply", "aws/prod", "--output", "json"],
        ["apply", "--output=json", "aws/prod"],
        ["--output", "json", "apply", "--output", "json", "aws/prod"],
    ],
)
def test_a_global_option_means_the_same_before_or_after_the_command(args: list[str]) -> None:
    assert hoist_global_options(args, GLOBAL, VALUES) == ["--output", "json", "apply", "aws/prod"]


def test_flags_and_values_move_in_the_order_first_given() -> None:
    args = ["ensure-transactor", "f.properties", "--endpoint-url", "http://x", "--debug", "--debug"]
    assert hoist_global_options(args, GLOBAL, VALUES) == [
        "--endpoint-url",
        "http://x",
        "--debug",
        "ensure-transactor",
        "f.properties",
    ]


def test_a_command_option_value_and_what_follows_double_dash_stay_in_place() -> None:
    # `--timeout --debug` would be click's to refuse; the value of a command option is never read
    # as a global option, and neither is anything after `--`.
    args = ["apply", "--timeout", "--debug", "--", "--output", "text"]
    assert hoist_global_options(args, GLOBAL, VALUES) == args


def test_a_conflicting_repeat_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as raised:
        hoist_global_options(["--output", "json", "apply", "--output", "text"], GLOBAL, VALUES)
    assert raised.value.exit_code == 2
    assert "--output is given twice with different values ('json' and 'text')" in str(raised.value)


def test_a_global_option_without_its_value_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        hoist_global_options(["apply", "--output"], GLOBAL, VALUES)


@pytest.mark.parametrize(
    ("is_tty", "output", "no_color", "env", "expected"),
    [
        (True, "text", False, {}, True),
        (False, "text", False, {}, False),  # piped
        (True, "json", False, {}, False),
        (True, "text", True, {}, False),  # --no-color
        (True, "text", False, {"NO_COLOR": "1"}, False),
        (True, "text", False, {"NO_COLOR": "0"}, False),  # any non-empty value
        (True, "text", False, {"NO_COLOR": ""}, True),  # empty: as if unset (no-color.org)
        (True, "text", False, {"TERM": "dumb"}, False),
    ],
)
def test_colour_only_on_a_terminal_without_no_color(
    is_tty: bool, output: str, no_color: bool, env: dict[str, str], expected: bool
) -> None:
    assert use_color(is_tty=is_tty, output=output, no_color=no_color, env=env) is expected


def test_the_live_line_only_on_a_terminal_and_never_with_json() -> None:
    assert live_progress(is_tty=True, output="text", env={})
    assert not live_progress(is_tty=False, output="text", env={})
    assert not live_progress(is_tty=True, output="json", env={})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_every_wait_line_shows_the_elapsed_time_and_no_live_line_when_piped() -> None:
    written: list[str] = []
    clock = Clock()
    term = Terminal(written.append, live=False, clock=clock)
    term.wait_line("CREATE_IN_PROGRESS AWS::CloudFormation::Stack datomic-prod")
    clock.now += 75
    term.wait_line("CREATE_COMPLETE AWS::CloudFormation::Stack datomic-prod")
    clock.now += 3600
    term.wait_line("done")
    term.line("Warning: something")
    term.close()
    assert written == [
        "[0:00] CREATE_IN_PROGRESS AWS::CloudFormation::Stack datomic-prod\n",
        "[1:15] CREATE_COMPLETE AWS::CloudFormation::Stack datomic-prod\n",
        "[1:01:15] done\n",
        "Warning: something\n",
    ]
    assert "\r" not in "".join(written)
    assert elapsed(59.9) == "0:59"


def test_on_a_terminal_a_live_line_follows_the_wait_lines_and_is_erased_at_the_end() -> None:
    written: list[str] = []
    clock = Clock()
    term = Terminal(written.append, live=True, clock=clock, columns=lambda: 60, tick=3600)
    term.wait_line("UPDATE_IN_PROGRESS AWS::AutoScaling::AutoScalingGroup LaunchGroup in stack x")
    clock.now += 12
    term.line("a line of the narration")
    term.close()
    clear = "\r\x1b[K"
    live = [w for w in written if "elapsed" in w]
    assert written == [
        "[0:00] UPDATE_IN_PROGRESS AWS::AutoScaling::AutoScalingGroup LaunchGroup in stack x\n",
        live[0],
        clear,
        "a line of the narration\n",
        live[1],
        clear,
    ]
    # The live line: the elapsed time and the last wait line, cut to the terminal's width.
    assert live[0].startswith(clear + "... 0:00 elapsed | UPDATE_IN_PROGRESS AWS::AutoScaling")
    assert live[1].startswith(clear + "... 0:12 elapsed | UPDATE_IN_PROGRESS AWS::AutoScaling")
    assert all(len(w.removeprefix(clear)) == 59 and w.endswith("...") for w in live)


def test_the_live_line_ticks_while_nothing_happens() -> None:
    written: list[str] = []
    ticked = threading.Event()

    def write(text: str) -> None:
        written.append(text)
        if len([w for w in written if "elapsed" in w]) >= 3:
            ticked.set()

    term = Terminal(write, live=True, tick=0.01)
    term.wait_line("waiting for instances")
    assert ticked.wait(5), written
    term.close()
    assert written[-1] == "\r\x1b[K"


def _result() -> Result:
    before = '{\n  "a": 1,\n  "b": 2\n}\n'
    after = '{\n  "a": 1,\n  "b": 3\n}\n'
    from datomic_aws.properties import unified_diff

    change = FileChange("cf.json", unified_diff(before, after, "cf.json"), True, after, before)
    changes = [
        Change("dynamodb table t", Action.CREATE, ("hash key id (S)",)),
        Change("iam role r", Action.UPDATE, ("inline policy p: update", "-  old", "+  new")),
        Change("s3 bucket b", Action.NOOP),
    ]
    return Result("apply", changes=changes, files=[change])


def test_the_text_summary_ends_with_the_aws_call_counts() -> None:
    text = render.to_text(_result(), {"total": 27, "mutating": 18, "by_operation": {}})
    assert text.splitlines()[-2].startswith("Changes: 1 created, 1 updated, 1 unchanged")
    assert text.splitlines()[-1] == "AWS calls: 27 (18 mutating)."
    assert "AWS calls" not in render.to_text(_result())  # no AWS context, as in the JSON


def test_a_coloured_report_is_the_plain_one_with_colours() -> None:
    plain = render.to_text(_result())
    colored = render.to_text(_result(), color=True)
    assert "\x1b[" not in plain
    assert "\x1b[32m  + create dynamodb table t\x1b[0m" in colored  # green
    assert "\x1b[33m  ~ update iam role r\x1b[0m" in colored  # yellow
    assert "\x1b[31m      -  old\x1b[0m" in colored and "\x1b[32m      +  new\x1b[0m" in colored
    assert '\x1b[31m    -  "b": 2\x1b[0m' in colored and '\x1b[32m    +  "b": 3\x1b[0m' in colored
    assert "\x1b[1m    --- a/cf.json\x1b[0m" in colored and "\x1b[36m    @@ " in colored
    assert "  = noop   s3 bucket b\n" in colored  # left alone: no colour
    assert _strip(colored) == plain


def test_colour_is_added_after_redaction() -> None:
    result = _result()
    result.extra["secrets"] = ["3"]
    colored = render.to_text(result, color=True)
    assert '"b": 3' not in colored and _strip(colored) == render.to_text(result)


def _strip(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_a_policy_update_shows_the_policy_document_diff() -> None:
    old = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject"}]}
    new = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}]}
    op = PutPolicy("role", "p", json.dumps(new), "update", json.dumps(old))
    lines = op.describe().splitlines()
    assert lines[0] == "inline policy p: update"
    assert '-      "Action": "s3:GetObject",' in lines
    assert '+      "Action": "s3:*",' in lines
    # A new policy (no document before) stays one line.
    assert PutPolicy("role", "p", json.dumps(new), "add").describe() == "inline policy p: add"
