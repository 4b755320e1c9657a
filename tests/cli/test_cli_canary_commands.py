"""Canaries through every command: the planted files of test_cli_canary.py (secrets in
transactor.properties and cf.properties) go through apply, ensure-cf, create-cf-template,
create-cf-stack, status, update-stack and delete-cf-stack, in text, `--output json`, `--debug` and
`--dry-run`, and through the refusals (AWS denying a call, an invalid file, an interrupted run, the
temporary copies a killed run leaves).

Each test runs one sequence on one converged state (the commands reuse what the previous ones
built). Every run's stdout and stderr, every file written in the folder (cf.json, the lock, any
temporary file) and the embedded AWS's whole state are scanned: the canaries, and the digest key
the tool writes itself, may be in the properties files and in the SSM configuration value only.
The diffs are checked to show the planted lines masked, and the SSM value to hold the canaries,
so that no scan passes by absence.

`demo` is not run here: it brings its own files (it copies the packaged samples into its folder,
over any file of the same name), so there is no place for an operator's secret in it.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from tests.cli.faulty_proxy import FaultyProxy
from tests.cli.fixtures import Proxy, start_cli
from tests.cli.test_cli_canary import (
    CANARIES,
    CF_MASKED,
    CF_MASKED_URL,
    ESC,
    REFUSED_CANARIES,
    F,
    assert_masked,
    checked,
    files_leaking,
    json_diffs,
    leaked,
    planted_folder,
    state_leaking,
    tool_secrets,
)

REGION = "us-east-1"
SYSTEM = "my-sql-system"
STACK = f"datomic-{SYSTEM}"
PARAMETER = f"/datomic/{SYSTEM}/transactor.properties"
FAST = ("--poll-interval", "0.1")
TEXT: tuple[str, ...] = ()
JSON = ("--output", "json")
DEBUG = ("--debug",)
R = REFUSED_CANARIES


def _paths(folder: Path) -> tuple[str, str, str]:
    return (
        str(folder / "transactor.properties"),
        str(folder / "cf.properties"),
        str(folder / "cf.json"),
    )


def _line_of(path: str, text: str) -> int:
    lines = Path(path).read_text(encoding="latin-1").splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def _edit(path: str, old: str, new: str) -> None:
    text = Path(path).read_text(encoding="latin-1")
    assert text.count(old) == 1, old
    Path(path).write_text(text.replace(old, new), encoding="latin-1")


def _nothing_leaked(endpoint: str, boto: Any, folder: Path) -> None:
    """No canary in a file of the folder (but the properties files) nor anywhere in AWS (but the
    SSM value, which holds them all: the state scan sees them)."""
    t, c, _ = _paths(folder)
    secret = tool_secrets(folder)
    assert files_leaking(folder, Path(t), Path(c), extra=secret) == {}
    leaks, held = state_leaking(endpoint, boto, PARAMETER, secret)
    assert leaks == {}
    stored = {n for n in CANARIES if n not in ("oracle", "escape")}  # a comment is not stored
    assert set(held) == stored | {f"tool secret {secret[0][:4]}..."}, held


def test_no_canary_from_a_fresh_folder_to_a_created_stack(
    cli: Any, boto: Any, endpoint: str, tmp_path: Path
) -> None:
    folder = planted_folder(tmp_path)
    run = checked(cli, folder)
    t, c, j = _paths(folder)
    # A fresh folder: apply's plan shows both files' diffs, every planted line in their context.
    for mode in (TEXT, JSON, DEBUG):
        plan = run(*mode, "apply", "--dry-run", str(folder))
        diff = json_diffs(plan) if mode == JSON else plan.stdout
        assert_masked(diff)
        assert_masked(diff, CF_MASKED)
        # The bare word is named by its line only, never quoted.
        assert f"{c}:{_line_of(c, F['cf_orphan'])} is not a key=value setting" in plan.stderr
    run(*DEBUG, "ensure-transactor", t)
    assert tool_secrets(folder)  # the digest key: scanned for from now on
    cf_plans = (
        run("ensure-cf", "--dry-run", c).stdout,
        json_diffs(run(*JSON, "ensure-cf", "--dry-run", c)),
    )
    first = run(*DEBUG, "ensure-cf", c).stdout
    for diff in (*cf_plans, first):
        assert_masked(diff, CF_MASKED)
    assert CF_MASKED_URL in first
    assert not run(*JSON, "ensure-cf", c).json["changed"]
    for mode in (TEXT, JSON):
        run(*mode, "create-cf-template", "--dry-run", t, c, j)
    run(*DEBUG, "create-cf-template", t, c, j)
    assert not run(*JSON, "create-cf-template", t, c, j).json["changed"]
    for mode in (TEXT, JSON):
        run(*mode, "create-cf-stack", "--dry-run", REGION, STACK, j, *FAST)
    run(*DEBUG, "create-cf-stack", REGION, STACK, j, *FAST)
    assert not run(*JSON, "create-cf-stack", REGION, STACK, j, *FAST).json["changed"]
    for mode in (TEXT, JSON, DEBUG):
        run(*mode, "status", REGION, STACK, "--template", j)
    _nothing_leaked(endpoint, boto, folder)


def test_no_canary_through_updates_refusals_an_interrupt_and_the_delete(
    cli: Any, boto: Any, endpoint: str, tmp_path: Path
) -> None:
    folder = planted_folder(tmp_path)
    run = checked(cli, folder)
    t, c, j = _paths(folder)
    run("apply", str(folder), *FAST)  # everything, the stack included
    # A template change (detailed monitoring off) for update-stack, then one (on again) for apply.
    _edit(c, "aws-instance-monitoring=true", "aws-instance-monitoring=false")
    run("create-cf-template", t, c, j)
    for mode in (TEXT, JSON):
        run(*mode, "update-stack", "--dry-run", REGION, STACK, j, *FAST)
    run(*DEBUG, "update-stack", "--yes", REGION, STACK, j, *FAST)
    assert not run(*JSON, "update-stack", "--yes", REGION, STACK, j, *FAST).json["changed"]
    _edit(c, "aws-instance-monitoring=false", "aws-instance-monitoring=true")
    assert run(*JSON, "apply", "--yes", str(folder), *FAST).json["changed"]
    # A run killed in its write-back leaves a temporary copy, every secret in it: the next removes it.
    killed = [folder / f".{Path(p).name}.k1ll3d.tmp" for p in (t, c)]
    for temp, source in zip(killed, (t, c), strict=True):
        temp.write_bytes(Path(source).read_bytes())
    run(*DEBUG, "apply", str(folder), *FAST)
    assert not [temp for temp in killed if temp.exists()]
    _nothing_leaked(endpoint, boto, folder)

    # A configuration change that AWS refuses to store, and reads AWS refuses.
    _edit(t, "memory-index-max=512m", "memory-index-max=768m")
    proxy = FaultyProxy(endpoint, deny={"ssm:PutParameter", "cloudformation:DescribeStacks"})
    try:
        env = {"AWS_ENDPOINT_URL": proxy.url}
        for args in (
            (*DEBUG, *JSON, "apply", str(folder), *FAST),
            (*DEBUG, "ensure-transactor", t),
            (*JSON, "status", REGION, STACK),
            (*DEBUG, "update-stack", "--yes", REGION, STACK, j, *FAST),
            ("delete-cf-stack", "--yes", REGION, STACK, *FAST),
        ):
            refused = run(*args, code=1, env=env)
            assert "AccessDenied" in refused.stderr, refused.stderr
    finally:
        proxy.close()
    _interrupted_apply(endpoint, folder)
    _edit(t, "memory-index-max=768m", "memory-index-max=512m")

    for mode in (TEXT, JSON):
        run(*mode, "delete-cf-stack", "--dry-run", REGION, STACK, *FAST)
    run(*DEBUG, "delete-cf-stack", "--yes", REGION, STACK, *FAST)
    run(*JSON, "delete-cf-stack", "--yes", REGION, STACK, *FAST)
    run("status", REGION, STACK, code=3)
    _nothing_leaked(endpoint, boto, folder)


def _interrupted_apply(endpoint: str, folder: Path) -> None:
    """Ctrl-C while apply stores the configuration: exit 130, nothing printed or left behind."""
    proxy = Proxy(endpoint)
    proxy.held_operations.add("PutParameter")
    proc = start_cli(proxy.url, *DEBUG, "apply", str(folder), *FAST)
    try:
        assert proxy.wait_held("PutParameter", timeout=120), proxy.log
        proc.send_signal(signal.SIGINT)
        proxy.release()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proxy.close()
    assert proc.returncode == 130, err
    assert leaked(out + err, tool_secrets(folder)) == [], (out, err)
    t, c, _ = _paths(folder)
    assert files_leaking(folder, Path(t), Path(c), extra=tool_secrets(folder)) == {}


def test_no_canary_when_a_planted_file_is_refused(cli: Any, tmp_path: Path) -> None:
    folder = planted_folder(tmp_path)
    run = checked(cli, folder)
    t, c, j = _paths(folder)
    d = str(folder)
    good_t, good_c = (Path(p).read_text(encoding="latin-1") for p in (t, c))
    token = f"    {F['cf_token_2']}\n"
    cases = [
        # Credentials in the download URL: refused, the URL would reach the template.
        (
            "datomic-download-url",
            "cf",
            good_c.replace(
                "# datomic-download-url=\n",
                f"datomic-download-url=https://datomic:{R['download_user']}@downloads.example.com"
                "/datomic-pro.zip\n",
            ),
        ),
        (
            "datomic-download-url",
            "cf",
            good_c.replace(
                "# datomic-download-url=\n",
                "datomic-download-url=https://downloads.example.com/datomic-pro.zip"
                f"?X-Amz-Signature={R['download_query']}\n",
            ),
        ),
        # A password among the JVM options: published in the template, its parameters and the
        # user data if it were accepted.
        (
            "java-opts",
            "cf",
            good_c.replace(
                "java-opts=\n",
                f"java-opts=-Djavax.net.ssl.trustStorePassword={R['java_opts']} -XX:+UseG1GC\n",
            ),
        ),
        # A malformed escape in the continued line of an unknown cf key.
        ("datomic-download-token", "cf", good_c.replace(token, f"{token[:-1]}\\{ESC}\n")),
        # A schema error elsewhere in a file full of canaries.
        (
            "aws-autoscaling-group-size",
            "cf",
            good_c.replace("aws-autoscaling-group-size=1\n", "aws-autoscaling-group-size=many\n"),
        ),
        # A Datomic-era IAM-user secret key in the transactor file.
        ("aws-s3-secret-key", "transactor", good_t + f"aws-s3-secret-key={R['legacy_key']}\n"),
    ]
    for key, which, text in cases:
        Path(t).write_text(text if which == "transactor" else good_t, encoding="latin-1")
        Path(c).write_text(text if which == "cf" else good_c, encoding="latin-1")
        ensure = ("ensure-transactor", t) if which == "transactor" else ("ensure-cf", c)
        runs = [ensure, (*JSON, "create-cf-template", t, c, j), (*DEBUG, "apply", "--dry-run", d)]
        if key == "datomic-download-url":  # and a real apply, in JSON
            runs.append((*JSON, "apply", d))
        for args in runs:
            refused = run(*args, code=2)
            assert key in refused.stderr, (key, refused.stderr)
            if key == "datomic-download-token":
                line = text.splitlines().index(f"{token[:-1]}\\{ESC}") + 1
                assert f"{c}:{line} datomic-download-token" in refused.stderr, refused.stderr
        assert files_leaking(folder, Path(t), Path(c)) == {}
    assert not Path(j).exists()
