"""Canaries: distinct secrets in every secret-bearing place of a transactor file, and none of them
in anything ensure-transactor prints or writes (but the properties file itself).

The places: password keys (`sql-password` continued onto a second physical line,
`memcached-password`, `license-key`), odd key names (`sql-passwd`, `metrics-api-key`), a URL's
user-info in `sql-url` (a key whose value is otherwise shown), driver parameters
(`sql-driver-params` with `password=`), and Oracle's `user/pass@` in a comment. They are planted
between the lines the tool rewrites, so that every one sits in the context of the file's diff;
the test checks the masked forms are there, so it never passes by absence. Every run (text,
`--output json`, `--debug`, `--dry-run`, the error paths) is scanned, and so is every file left
in the folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.cli.faulty_proxy import FaultyProxy

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"

CANARIES = {
    "sql_password_1": "CANARYpwHEAD71",
    "sql_password_2": "CANARYpwTAIL72",
    "memcached": "CANARY-MEMCACHED-73",
    "license": "CANARY-LICENSE-74",
    "passwd": "CANARY-PASSWD-75",
    "api_key": "CANARY-APIKEY-76",
    "url": "CANARY-URLPASS-77",
    "driver": "CANARY-DRIVER-78",
    "oracle": "CANARY-ORACLE-79",
    "escape": "uQRST",  # a malformed escape's four characters: the exception quotes them
}
C = CANARIES
ESC = C["escape"]


def planted_text() -> str:
    text = (SAMPLES / "sql-transactor.properties").read_text(encoding="latin-1")
    for line in (
        "sql-url=jdbc:postgresql://db.internal:5432/datomic\n",
        "sql-password=change-me\n",
        "aws-transactor-role=\n",
        "aws-peer-role=\n",
        "# aws-s3-log-bucket-id=\n",
    ):
        assert text.count(line) == 1, line
        text = text.replace(line, "")
    block = (
        f"license-key={C['license']}\n"
        f"memcached-password={C['memcached']}\n"
        f"sql-passwd={C['passwd']}\n"
        "aws-transactor-role=\n"
        f"metrics-api-key={C['api_key']}\n"
        f"sql-password={C['sql_password_1']}\\\n"
        f"    {C['sql_password_2']}\n"
        "aws-peer-role=\n"
        f"sql-url=jdbc:postgresql://datomic:{C['url']}@db.internal:5432/datomic\n"
        f"sql-driver-params=ssl=true;password={C['driver']};loginTimeout=5\n"
        f"# previously jdbc:oracle:thin:scott/{C['oracle']}@db:1521:orcl\n"
        "aws-s3-log-bucket-id=\n"
    )
    return text + block


def leaked(text: str) -> list[str]:
    return [name for name, value in CANARIES.items() if value in text]


def scanned(cli: Any) -> Any:
    def run(*args: str, **kwargs: Any) -> Any:
        result = cli(*args, **kwargs)
        assert leaked(result.stdout + result.stderr) == [], (args, result.stdout, result.stderr)
        return result

    return run


def files_leaking(folder: Path, allowed: Path) -> dict[str, list[str]]:
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and path != allowed:
            names = leaked(path.read_bytes().decode("latin-1"))
            if names:
                found[str(path)] = names
    return found


def test_no_canary_in_anything_printed_or_written(cli: Any, tmp_path: Path) -> None:
    run = scanned(cli)
    folder = tmp_path / "env"
    folder.mkdir()
    path = folder / "transactor.properties"
    path.write_bytes(planted_text().encode("latin-1"))
    t = str(path)

    plan = run("ensure-transactor", "--dry-run", t)
    plan_json = run("--output", "json", "ensure-transactor", "--dry-run", t)
    debug_plan = run("--debug", "ensure-transactor", "--dry-run", t)
    first = run("--debug", "ensure-transactor", t)
    again = run("--output", "json", "ensure-transactor", t)
    text_again = run("ensure-transactor", t)
    for r in (plan, plan_json, debug_plan, first, again, text_again):
        assert r.code == 0, r.stderr
    # The canaries' lines are shown masked: the scan does not pass by their absence.
    diffs = (plan.stdout, debug_plan.stdout, first.stdout, plan_json.json["files"][0]["diff"])
    for diff in diffs:
        for masked in (
            "license-key=********",
            "memcached-password=********",
            "sql-passwd=********",
            "metrics-api-key=********",
            "sql-password=********",
            "    ********",
            "sql-url=jdbc:postgresql://********@db.internal:5432/datomic",
            "sql-driver-params=********",
            "jdbc:oracle:thin:scott/********@db:1521:orcl",
        ):
            assert masked in diff, (masked, diff)
    assert files_leaking(tmp_path, path) == {}
    assert leaked(path.read_text(encoding="latin-1")) == [n for n in CANARIES if n != "escape"]


def test_no_canary_when_aws_refuses_the_call_that_carries_them(
    cli: Any, endpoint: str, tmp_path: Path
) -> None:
    run = scanned(cli)
    path = tmp_path / "transactor.properties"
    path.write_bytes(planted_text().encode("latin-1"))
    proxy = FaultyProxy(endpoint, deny={"ssm:PutParameter"})
    try:
        for args in (
            ("--debug", "ensure-transactor", str(path)),
            ("--debug", "--output", "json", "ensure-transactor", str(path)),
        ):
            result = run(*args, env={"AWS_ENDPOINT_URL": proxy.url})
            assert result.code == 1 and "ssm:PutParameter" in result.stderr, result.stderr
            assert "Traceback" in result.stderr  # --debug did print its details
    finally:
        proxy.close()
    assert files_leaking(tmp_path, path) == {}


def test_no_canary_on_error_paths(cli: Any, tmp_path: Path) -> None:
    run = scanned(cli)
    path = tmp_path / "transactor.properties"
    good = planted_text()
    t = str(path)
    cases = {
        # A malformed \u escape inside the continued password: exit 2 naming file, line and key.
        "escape": good.replace(
            f"    {C['sql_password_2']}\n", f"    {C['sql_password_2']}\\{ESC}\n"
        ),
        # Invalid values whose text holds a credential, under a key whose values are shown.
        "url": good.replace("sql-url=jdbc:", "sql-url="),
        "oracle": good.replace(
            f"sql-url=jdbc:postgresql://datomic:{C['url']}@db.internal:5432/datomic",
            f"sql-url=oracle:thin:scott/{C['url']}@db:1521:orcl",
        ),
    }
    for name, text in cases.items():
        path.write_bytes(text.encode("latin-1"))
        for args in (
            ("ensure-transactor", t),
            ("--debug", "ensure-transactor", t),
            ("--output", "json", "ensure-transactor", "--dry-run", t),
        ):
            result = run(*args)
            assert result.code == 2, (name, result.stderr)
            if name == "escape":
                line = text.splitlines().index(f"    {C['sql_password_2']}\\{ESC}") + 1
                assert f"{t}:{line} sql-password" in result.stderr, result.stderr
                assert "malformed \\u escape" in result.stderr
                assert "--debug" in args or "Traceback" not in result.stderr
            else:
                assert "sql-url" in result.stderr, result.stderr
    assert files_leaking(tmp_path, path) == {}
