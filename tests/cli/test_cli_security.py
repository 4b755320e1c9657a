"""No secret in any command output: text, JSON, --dry-run diffs, --debug, error paths.

The samples get distinctive secrets (license-key, memcached-password, sql-password, a legacy
aws-dynamodb-secret-key), planted right above the lines the tool rewrites so that they sit in the
context of every file diff. The `cli` fixture is wrapped here: every run of this module has its
stdout and stderr scanned for them. Where a diff shows a secret's line, it must show it masked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.faulty_proxy import FaultyProxy

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"
LICENSE = "PLANTED-LICENSE-KEY-5c1e9b"
MEMCACHED_PW = "PLANTED-MEMCACHED-PW-77aa3d"
SQL_PW = "PLANTED-SQL-PW-0f42e8"
LEGACY_KEY = "PLANTED-LEGACY-SECRET-KEY-93d1"
SECRETS = (LICENSE, MEMCACHED_PW, SQL_PW, LEGACY_KEY)
STACK = "datomic-my-datomic-system"


@pytest.fixture
def cli(cli: Any) -> Iterator[Any]:
    """The conftest's `cli`, with every run's output scanned for the planted secrets."""
    runs: list[tuple[tuple[str, ...], Any]] = []

    def run(*args: str, **kwargs: Any) -> Any:
        result = cli(*args, **kwargs)
        runs.append((args, result))
        leaked = [s for s in SECRETS if s in result.stdout or s in result.stderr]
        assert leaked == [], f"datomic-aws {' '.join(args)} printed {leaked}"
        return result

    yield run
    assert runs, "no command was run"


def plant(text: str, lines: str) -> str:
    assert text.count("aws-transactor-role=\n") == 1
    return text.replace("aws-transactor-role=\n", lines + "aws-transactor-role=\n")


def ddb_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "env"
    folder.mkdir()
    text = (SAMPLES / "transactor.properties").read_text(encoding="latin-1")
    text = text.replace("# aws-s3-log-bucket-id=\n", "aws-s3-log-bucket-id=\n")
    text = plant(
        text,
        f"license-key={LICENSE}\nmemcached=cache.internal:11211\n"
        f"memcached-password={MEMCACHED_PW}\n",
    )
    (folder / "transactor.properties").write_bytes(text.encode("latin-1"))
    (folder / "cf.properties").write_bytes((SAMPLES / "cf.properties").read_bytes())
    return folder


def sql_file(tmp_path: Path) -> Path:
    text = (SAMPLES / "sql-transactor.properties").read_text(encoding="latin-1")
    text = text.replace("sql-password=change-me\n", "")
    text = plant(text, f"sql-password={SQL_PW}\n")
    path = tmp_path / "sql-transactor.properties"
    path.write_bytes(text.encode("latin-1"))
    return path


def test_no_secret_in_the_output_of_any_command(cli: Any, tmp_path: Path) -> None:
    folder = ddb_folder(tmp_path)
    t, cf, out = (str(folder / n) for n in ("transactor.properties", "cf.properties", "cf.json"))
    poll = ("--poll-interval", "0.1")

    plan = cli("ensure-transactor", "--dry-run", t)
    assert plan.code == 0, plan.stderr
    plan_json = cli("--output", "json", "ensure-transactor", "--dry-run", t)
    first = cli("ensure-transactor", t)
    assert first.code == 0, first.stderr
    # The secret lines are in the diff's context, masked: the scan is not passing by absence.
    for output in (plan.stdout, plan_json.stdout, first.stdout):
        assert "license-key=********" in output and "memcached-password=********" in output
    assert "license-key" in first.stderr  # the obsolete-key warning names the key, not its value
    for args in (
        ("--output", "json", "ensure-transactor", t),
        ("--debug", "ensure-transactor", t),
        ("ensure-cf", cf),
        ("create-cf-template", t, cf, out),
        ("--output", "json", "create-cf-template", t, cf, out),
        ("--debug", "create-cf-stack", "us-east-1", STACK, out, *poll),
        ("status", "us-east-1", STACK, "--template", out),
        ("--output", "json", "status", "us-east-1", STACK),
        ("--output", "json", "apply", "--dry-run", str(folder), *poll),
        ("--debug", "--output", "json", "apply", str(folder), *poll),
    ):
        run = cli(*args)
        assert run.code == 0, f"{args}: {run.stderr}"
    assert [s for s in (LICENSE, MEMCACHED_PW) if s in Path(out).read_text()] == []


def test_no_sql_password_in_output(cli: Any, tmp_path: Path) -> None:
    path = sql_file(tmp_path)
    plan = cli("--output", "json", "ensure-transactor", "--dry-run", path.as_posix())
    first = cli("ensure-transactor", str(path))
    again = cli("--debug", "--output", "json", "ensure-transactor", str(path))
    assert (plan.code, first.code, again.code) == (0, 0, 0), first.stderr
    assert "sql-password=********" in plan.stdout and "sql-password=********" in first.stdout


def test_no_secret_on_error_paths(cli: Any, endpoint: str, tmp_path: Path) -> None:
    folder = ddb_folder(tmp_path)
    path = folder / "transactor.properties"
    good = path.read_bytes()

    # Invalid input: a legacy secret key, and a bad value on a line next to the secrets.
    bad = good.decode("latin-1").replace(
        "memcached=cache.internal:11211\n",
        f"memcached=cache.internal:11211\naws-dynamodb-secret-key={LEGACY_KEY}\nport=notaport\n",
    )
    path.write_bytes(bad.encode("latin-1"))
    for args in (
        ("ensure-transactor", str(path)),
        ("--debug", "ensure-transactor", str(path)),
        ("--output", "json", "ensure-transactor", str(path)),
        ("--output", "json", "apply", "--dry-run", str(folder)),
    ):
        run = cli(*args)
        assert run.code == 2, run.stderr
        assert "aws-dynamodb-secret-key" in run.stderr  # the key is named, its value is not

    # AWS refusing the very call that carries the secrets (the stored configuration).
    path.write_bytes(good)
    proxy = FaultyProxy(endpoint, deny={"ssm:PutParameter"})
    try:
        env = {"AWS_ENDPOINT_URL": proxy.url}
        for args in (
            ("--debug", "ensure-transactor", str(path)),
            ("--debug", "--output", "json", "ensure-transactor", str(path)),
        ):
            run = cli(*args, env=env)
            assert run.code == 1 and "ssm:PutParameter" in run.stderr, run.stderr
            assert "Traceback" in run.stderr
    finally:
        proxy.close()


def test_symlinked_output_in_a_sticky_folder_is_refused(cli: Any, tmp_path: Path) -> None:
    folder = ddb_folder(tmp_path)
    target = folder / "transactor.properties"
    before = target.read_bytes()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    link = shared / "transactor.properties"
    link.symlink_to(target)
    for args in (
        ("ensure-transactor", str(link)),
        ("ensure-transactor", "--dry-run", str(link)),
        ("ensure-transactor", str(target), str(link)),
    ):
        run = cli(*args)
        assert run.code == 2, run.stderr
        assert str(link) in run.stderr and "symbolic link" in run.stderr, run.stderr
    assert target.read_bytes() == before and link.is_symlink()
    assert sorted(p.name for p in shared.iterdir()) == ["transactor.properties"]


def test_symlinked_lock_file_is_refused(cli: Any, tmp_path: Path) -> None:
    from datomic_aws.locking import LOCK_NAME

    folder = ddb_folder(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (folder / LOCK_NAME).symlink_to(victim)
    before = (folder / "transactor.properties").read_bytes()
    run = cli("ensure-transactor", str(folder / "transactor.properties"))
    assert run.code == 2, run.stderr
    assert LOCK_NAME in run.stderr and "symbolic link" in run.stderr, run.stderr
    assert victim.read_text() == "precious\n"
    assert (folder / "transactor.properties").read_bytes() == before


def test_temp_file_left_by_a_kill_is_removed_by_the_next_run(cli: Any, tmp_path: Path) -> None:
    from tests.unit.test_file_safety import killed_writer

    folder = ddb_folder(tmp_path)
    path = folder / "transactor.properties"
    left = killed_writer(folder, path.name)
    plan = cli("ensure-transactor", "--dry-run", str(path))
    assert plan.code == 0, plan.stderr
    assert left.exists(), "a dry run removes nothing"
    run = cli("ensure-transactor", str(path))
    assert run.code == 0, run.stderr
    assert not left.exists()
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []
