"""The habits operators bring from aws-cli and Terraform (issue 13, Deliver 4), through the real
process against the moto server: global options anywhere, shell completion, wait lines with the
elapsed time, coloured diffs only on a terminal, `apply` in the current folder, the AWS call
counts at the end of the text, and the policy diff of an update."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.fixtures import command_line

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"
ROLE = "datomic-my-datomic-system-transactor"
SHELLS = ("bash", "zsh", "fish")


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "env"
    folder.mkdir()
    for name in ("transactor.properties", "cf.properties"):
        shutil.copyfile(SAMPLES / name, folder / name)
    return folder


def _env(endpoint: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "NO_COLOR")}
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return {**env, **extra}


def _run(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command_line(), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_ensure_transactor_file_then_endpoint_url_works(endpoint: str, tmp_path: Path) -> None:
    path = _folder(tmp_path) / "transactor.properties"
    # No AWS_ENDPOINT_URL: only the option after the command points the run at the server.
    run = _run("ensure-transactor", str(path), "--endpoint-url", endpoint, "--output", "json",
               env=_env())  # fmt: skip
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["command"] == "ensure-transactor" and doc["aws_calls"]["mutating"] > 0
    # The same options before the command: the same meaning (a no-op now).
    again = _run("--endpoint-url", endpoint, "--output", "json", "ensure-transactor", str(path),
                 env=_env())  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["changed"] is False


def test_a_conflicting_repeat_of_a_global_option_exits_2(endpoint: str, tmp_path: Path) -> None:
    path = _folder(tmp_path) / "transactor.properties"
    run = _run("--output", "json", "ensure-transactor", str(path), "--output", "text",
               env=_env(endpoint))  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "--output is given twice with different values ('json' and 'text')" in run.stderr
    assert path.read_bytes() == (SAMPLES / "transactor.properties").read_bytes()


@pytest.mark.parametrize("shell", SHELLS)
def test_the_completion_script_is_printed_for_each_shell(shell: str) -> None:
    by_command = _run("completion", shell, env=_env())
    assert by_command.returncode == 0, by_command.stderr
    assert "_DATOMIC_AWS_COMPLETE" in by_command.stdout
    # click's own protocol gives the same script.
    by_variable = _run(env=_env(_DATOMIC_AWS_COMPLETE=f"{shell}_source"))
    assert by_variable.returncode == 0, by_variable.stderr
    assert by_variable.stdout == by_command.stdout


@pytest.mark.parametrize(
    ("shell", "env", "expected"),
    [
        ("bash", {"COMP_CWORD": "1"}, "plain,ensure-transactor"),
        # zsh and fish show each command's summary beside it.
        ("zsh", {"COMP_CWORD": "1"}, "plain\nensure-transactor\nEnsure the table, roles,"),
        ("fish", {"COMP_CWORD": "ensure-t"}, "plain,ensure-transactor\tEnsure the table, roles,"),
    ],
)
def test_completing_a_partial_command_name_returns_the_command(
    shell: str, env: dict[str, str], expected: str
) -> None:
    run = _run(env=_env(_DATOMIC_AWS_COMPLETE=f"{shell}_complete",
                        COMP_WORDS="datomic-aws ensure-t", **env))  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(expected), run.stdout
    assert "ensure-cf" not in run.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_a_partial_command_name_with_the_script(tmp_path: Path) -> None:
    # A `datomic-aws` on the PATH, as an installed one is: the script calls it by name.
    shim = tmp_path / "datomic-aws"
    shim.write_text(f'#!/bin/sh\nexec {" ".join(command_line())} "$@"\n')
    shim.chmod(0o755)
    script = _run("completion", "bash", env=_env()).stdout
    (tmp_path / "complete.bash").write_text(script)
    probe = (
        f". {tmp_path / 'complete.bash'}\n"
        "COMP_WORDS=(datomic-aws ensure-t); COMP_CWORD=1\n"
        "_datomic_aws_completion datomic-aws\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = _env(PATH=f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    run = subprocess.run(["bash", "--norc", "-c", probe], capture_output=True, text=True, env=env,
                         timeout=60, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["ensure-transactor"]


def test_apply_defaults_to_the_current_folder(endpoint: str, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    here = _run("--output", "json", "apply", "--dry-run", env=_env(endpoint), cwd=folder)
    named = _run("--output", "json", "apply", "--dry-run", ".", env=_env(endpoint), cwd=folder)
    assert here.returncode == 0, here.stderr
    import difflib

    # (the configuration's digest is keyed per first run: it never repeats)
    a, b = (
        re.sub(
            r"(hmac-sha256 |datomic-aws-config-digest=)[0-9a-f]+",
            r"\1hmac",
            json.dumps(json.loads(r.stdout), indent=1),
        ).splitlines()
        for r in (here, named)
    )
    assert a == b, "\n".join(difflib.unified_diff(a, b, lineterm=""))
    assert {Path(f["path"]).name for f in json.loads(here.stdout)["files"]} == {
        "transactor.properties",
        "cf.properties",
    }


def test_the_text_ends_with_the_aws_call_counts_and_is_never_coloured_when_piped(
    endpoint: str, tmp_path: Path
) -> None:
    path = _folder(tmp_path) / "transactor.properties"
    run = _run("ensure-transactor", str(path), env=_env(endpoint))
    assert run.returncode == 0, run.stderr
    doc = json.loads(_run("--output", "json", "ensure-transactor", "--dry-run", str(path),
                          env=_env(endpoint)).stdout)  # fmt: skip
    last = run.stdout.splitlines()[-1]
    assert re.fullmatch(r"AWS calls: \d+ \(\d+ mutating\)\.", last), run.stdout
    assert int(last.split()[2]) > 0 and "(0 mutating)" not in last
    assert doc["aws_calls"]["mutating"] == 0
    assert "\x1b[" not in run.stdout + run.stderr
    # status too: its report ends with what it read (and it never writes).
    status = _run("status", "us-east-1", "datomic-no-such-stack", env=_env(endpoint))
    assert status.returncode == 3, status.stderr
    assert status.stdout.splitlines()[-1] == "AWS calls: 1 (0 mutating).", status.stdout


def _on_a_terminal(*args: str, env: dict[str, str]) -> str:
    """stdout as a terminal shows it (a pseudo-terminal); stderr piped."""
    main, secondary = pty.openpty()
    try:
        proc = subprocess.run([*command_line(), *args], stdout=secondary, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, env=env, timeout=120, check=False)  # fmt: skip
        os.close(secondary)
        shown = _drained(main)
    finally:
        os.close(main)
    assert proc.returncode == 0, proc.stderr
    return shown


def _drained(main: int) -> str:
    """What the pseudo-terminal's other end received, once its writer has closed it."""
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the terminal is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_diffs_are_coloured_on_a_terminal_unless_no_color(endpoint: str, tmp_path: Path) -> None:
    path = _folder(tmp_path) / "transactor.properties"
    args = ("ensure-transactor", "--dry-run", str(path))
    colored = _on_a_terminal(*args, env=_env(endpoint))
    assert "\x1b[32m  + create dynamodb table my-datomic-system\x1b[0m" in colored
    assert "\x1b[32m    +aws-transactor-role=" in colored  # the file's diff, added lines green
    for off in ({"NO_COLOR": "1"}, {"TERM": "dumb"}):
        assert "\x1b[" not in _on_a_terminal(*args, env=_env(endpoint, **off))
    assert "\x1b[" not in _on_a_terminal(*args, "--no-color", env=_env(endpoint))
    assert "\x1b[" not in _on_a_terminal("--output", "json", *args, env=_env(endpoint))


def test_a_policy_update_shows_the_policy_diff(endpoint: str, boto: Any, tmp_path: Path) -> None:
    path = _folder(tmp_path) / "transactor.properties"
    assert _run("ensure-transactor", str(path), env=_env(endpoint)).returncode == 0
    iam = boto("iam")
    name = "my-datomic-system-transactor"  # the transactor's table policy (policies.py)
    assert name in iam.list_role_policies(RoleName=ROLE)["PolicyNames"]
    drifted = {"Version": "2012-10-17",
               "Statement": [{"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "*"}]}  # fmt: skip
    iam.put_role_policy(RoleName=ROLE, PolicyName=name, PolicyDocument=json.dumps(drifted))
    run = _run("ensure-transactor", str(path), env=_env(endpoint))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    at = lines.index(f"      inline policy {name}: update")
    diff = lines[at + 1 :]
    assert diff[:2] == [f"      --- a/{name}.json", f"      +++ b/{name}.json"], lines
    assert '      -      "Action": "dynamodb:GetItem",' in diff
    assert any(line.startswith('      +      "Action": [') for line in diff), diff


def test_wait_lines_show_the_elapsed_time(endpoint: str, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    run = _run("apply", str(folder), "--poll-interval", "0.1", env=_env(endpoint))
    assert run.returncode == 0, run.stderr
    events = [line for line in run.stderr.splitlines() if "AWS::" in line]
    assert events, run.stderr
    assert all(re.match(r"\[\d+:\d\d\] ", line) for line in events), events
    assert "\r" not in run.stderr  # no live line when stderr is piped


if sys.platform == "win32":  # pragma: no cover - pty is POSIX
    pytestmark = pytest.mark.skip(reason="needs a POSIX pseudo-terminal")


def _stderr_on_a_terminal(*args: str, env: dict[str, str], hold: Path) -> tuple[int, str]:
    """stderr as a terminal shows it, while the test holds the folder lock of `hold`."""
    import fcntl

    main, secondary = pty.openpty()
    with open(hold / ".datomic-aws.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        proc = subprocess.run([*command_line(), *args], stdout=subprocess.PIPE, stderr=secondary,
                              stdin=subprocess.DEVNULL, env=env, timeout=120, check=False)  # fmt: skip
    os.close(secondary)
    shown = _drained(main)
    os.close(main)
    return proc.returncode, shown


def test_a_live_line_ticks_under_the_wait_lines_on_a_terminal_only(
    endpoint: str, tmp_path: Path
) -> None:
    path = _folder(tmp_path) / "transactor.properties"
    args = ("--lock-timeout", "2.5", "ensure-transactor", str(path))
    code, seen = _stderr_on_a_terminal(*args, env=_env(endpoint), hold=path.parent)
    assert code == 1, seen  # the lock was never free
    clear = "\r\x1b[K"
    assert re.search(r"\[\d:\d\d\] waiting for another datomic-aws run \(pid 4242\)", seen), seen
    live = re.findall(r"\r\x1b\[K\.\.\. (\d:\d\d) elapsed \| waiting for another datomic-aws", seen)
    assert len(set(live)) >= 2, seen  # redrawn each second while nothing happens
    # Erased before the error is written.
    assert seen.split("Error:")[0].endswith(clear), seen
    _, as_json = _stderr_on_a_terminal("--output", "json", *args, env=_env(endpoint),
                                       hold=path.parent)  # fmt: skip
    assert re.search(r"\[\d:\d\d\] waiting for another datomic-aws run", as_json), as_json
    assert "\r" not in as_json.replace("\r\n", "\n")  # the terminal's own line ends aside
