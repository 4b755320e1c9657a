"""Canaries: distinct secrets in every secret-bearing place of a transactor file, and none of them
in anything ensure-transactor prints or writes (but the properties file itself).

The places: password keys (`sql-password` continued onto a second physical line,
`memcached-password`, `license-key`), odd key names (`sql-passwd`, `metrics-api-key`, and
`ssl-keystore-pass`, which names no secret word: only the allowlist masks it), a URL's user-info in
`sql-url` (a key whose value is otherwise shown), driver parameters (`sql-driver-params` with
`password=`), Oracle's `user/pass@` in a comment, a continued line that reads like a shown key
(`aws-dynamodb-region=...` as the second line of an unknown key's value), a bare word on a line
of its own (the rest of a password whose line lost its backslash: a key to Java), a key with
escapes (`db\\:secret=x`: the key's name holds the secret), and a URL's user-info continued
over two lines under a shown key (`aws-dynamodb-override-endpoint=http://ddb:\\` then
`secret@localhost:8000`: neither line holds a credential of its own). They are planted between
the lines the tool rewrites, so that every one sits in the context of the file's diff; the test
checks the masked forms are there, so it never passes by absence. Every run (text,
`--output json`, `--debug`, `--dry-run`, the error paths) is scanned, and so is every file left
in the folder.

This module also owns the planted files and the scans every canary test shares (`planted_folder`,
`scanned`, `files_leaking`, `state_leaking`); test_cli_canary_*.py run the other commands on them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.request
from collections.abc import Iterator
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
    "keystore": "CANARY-KEYSTORE-80",
    "continued_key": "CANARY-CONTKEY-89",
    "orphan": "CANARY-ORPHAN-92",
    "escaped_key": "CANARY-KEYNAME-94",
    "split_url": "CANARY-SPLIT-96",
}
C = CANARIES
ESC = C["escape"]
# In cf.properties: keys the cf file does not know (warned about, ignored), a Datomic-era secret
# key among them, a continued value, a URL's user-info in a comment.
CF_CANARIES = {
    "cf_legacy": "CANARY-CF-SECRET-81",
    "cf_odd": "CANARY-CF-AUTH-82",
    "cf_comment_url": "CANARY-CF-URL-83",
    "cf_token_1": "CANARYcfHEAD84",
    "cf_token_2": "CANARYcfTAIL85",
    "cf_continued": "CANARY-CF-CONT-86",
    "cf_orphan": "CANARY-CF-ORPHAN-93",
    "cf_escaped_key": "CANARY-CF-KEYNAME-95",
}
F = CF_CANARIES
# Planted only by the tests of refusals: a download URL with user-info or a signed query string
# (refused: the URL would reach the template and the user data), a password among the JVM options
# (the same), a legacy IAM-user secret key.
REFUSED_CANARIES = {
    "download_user": "CANARY-DOWNLOAD-87",
    "download_query": "CANARY-SIGNATURE-88",
    "legacy_key": "CANARY-LEGACY-90",
    "java_opts": "CANARY-JAVAOPTS-91",
}
ALL_CANARIES = {**CANARIES, **CF_CANARIES, **REFUSED_CANARIES}
# What the diffs show of the planted lines (the scan must not pass by their absence).
MASKED = (
    "license-key=********",
    "memcached-password=********",
    "sql-passwd=********",
    "ssl-keystore-pass=********",
    "metrics-api-key=********",
    "sql-password=********",
    "    ********",
    "sql-url=jdbc:postgresql://********@db.internal:5432/datomic",
    "sql-driver-params=********",
    "jdbc:oracle:thin:scott/********@db:1521:orcl",
)
CF_MASKED = (
    "aws-secret-key=********",
    "datomic-mirror-blob=********",
    "datomic-mirror-auth=********",
    "datomic-download-token=********",
)
# Only once the security group id is known (a real ensure-cf): its line is that comment's context.
CF_MASKED_URL = "# mirror https://********@mirror.internal/datomic.zip"


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
        f"ssl-keystore-pass={C['keystore']}\n"
        "datomic-auth-blob=\\\n"
        f"aws-dynamodb-region={C['continued_key']}\n"
        f"metrics-api-key={C['api_key']}\n"
        f"sql-password={C['sql_password_1']}\\\n"
        f"    {C['sql_password_2']}\n"
        "aws-peer-role=\n"
        f"sql-url=jdbc:postgresql://datomic:{C['url']}@db.internal:5432/datomic\n"
        f"sql-driver-params=ssl=true;password={C['driver']};loginTimeout=5\n"
        f"    {C['orphan']}\n"
        f"db\\:{C['escaped_key']}=x\n"
        f"# previously jdbc:oracle:thin:scott/{C['oracle']}@db:1521:orcl\n"
        "aws-s3-log-bucket-id=\n"
        "aws-dynamodb-override-endpoint=http://ddb:\\\n"
        f"    {C['split_url']}@localhost:8000\n"
    )
    return text + block


def planted_cf_text() -> str:
    text = (SAMPLES / "cf.properties").read_text(encoding="latin-1")
    for line, planted in (
        (
            "java-xmx=\n",
            f"aws-secret-key={F['cf_legacy']}\n"
            f"datomic-mirror-blob=\\\naws-region={F['cf_continued']}\n",
        ),
        (
            "aws-vpc-id=\n",
            f"datomic-mirror-auth={F['cf_odd']}\n  {F['cf_orphan']}\n"
            f"mirror\\:{F['cf_escaped_key']}=1\n",
        ),
        (
            "aws-stack-name=\n",
            f"datomic-download-token={F['cf_token_1']}\\\n    {F['cf_token_2']}\n",
        ),
    ):
        assert text.count(line) == 1, line
        text = text.replace(line, planted + line)
    line = "aws-security-group-id=\n"
    assert text.count(line) == 1, line
    return text.replace(
        line, f"{line}# mirror https://deploy:{F['cf_comment_url']}@mirror.internal/datomic.zip\n"
    )


def planted_folder(tmp_path: Path) -> Path:
    """An environment folder holding both planted files."""
    folder = tmp_path / "env"
    folder.mkdir()
    (folder / "transactor.properties").write_bytes(planted_text().encode("latin-1"))
    (folder / "cf.properties").write_bytes(planted_cf_text().encode("latin-1"))
    return folder


def assert_masked(diff: str, forms: tuple[str, ...] = MASKED) -> None:
    """The planted lines are in `diff`, masked: the scan does not pass by their absence. A
    continued line is masked whole, whatever it reads like (`aws-dynamodb-region=...`), and so is
    a bare word on a line of its own (a key to Java, but maybe the rest of a password), and a key
    with escapes (`db\\:secret=`, whose name may hold a secret)."""
    for masked in forms:
        assert masked in diff, (masked, diff)
    lines = [line.strip() for line in diff.splitlines()]
    for head, masked in (
        ("datomic-auth-blob=********", 1),
        ("datomic-mirror-blob=********", 1),
        ("sql-driver-params=********", 2),
        ("datomic-mirror-auth=********", 2),
        ("aws-dynamodb-override-endpoint=********", 1),
    ):
        if any(head in line for line in lines):
            at = next(i for i, line in enumerate(lines) if line.endswith(head))
            assert lines[at + 1 : at + 1 + masked] == ["********"] * masked, (head, diff)


def leaked(text: str, extra: tuple[str, ...] = ()) -> list[str]:
    found = [name for name, value in ALL_CANARIES.items() if value in text]
    return found + [f"tool secret {value[:4]}..." for value in extra if value and value in text]


def tool_secrets(folder: Path) -> tuple[str, ...]:
    """The secret the tool itself writes into the transactor file (the key of the configuration's
    digest), once it has: scanned for like a canary."""
    path = folder / "transactor.properties"
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("datomic-aws-digest-secret="):
            return (line.split("=", 1)[1],)
    return ()


def checked(cli: Any, folder: Path) -> Any:
    """`cli`, each run scanned for the canaries and the tool's own secret, its exit code checked."""

    def run(*args: str, code: int = 0, env: dict[str, str] | None = None) -> Any:
        result = cli(*args, env=env)
        found = leaked(result.stdout + result.stderr, tool_secrets(folder))
        assert found == [], (args, found, result.stdout, result.stderr)
        assert result.code == code, (args, result.code, result.stdout, result.stderr)
        return result

    return run


def json_diffs(result: Any) -> str:
    return "\n".join(f["diff"] for f in result.json["files"])


def scanned(cli: Any) -> Any:
    def run(*args: str, **kwargs: Any) -> Any:
        result = cli(*args, **kwargs)
        assert leaked(result.stdout + result.stderr) == [], (args, result.stdout, result.stderr)
        return result

    return run


def files_leaking(
    folder: Path, *allowed: Path, extra: tuple[str, ...] = ()
) -> dict[str, list[str]]:
    """Every file under `folder` (cf.json, the lock, any temporary or backup file) but the
    properties files themselves, with the canaries it holds."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and path not in allowed:
            names = leaked(path.read_bytes().decode("latin-1"), extra)
            if names:
                found[str(path)] = names
    return found


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
        with contextlib.suppress(ValueError):  # user data and other base64 payloads
            yield f"{path}(base64)", base64.b64decode(value, validate=True).decode("latin-1")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}/{i}")


def state_leaking(endpoint: str, boto: Any, parameter: str, extra: tuple[str, ...] = ()) -> Any:
    """The embedded AWS's whole state (moto's data.json: every resource, tag, parameter, stack,
    launch template...), plus what data.json leaves out (S3 objects, the deployed templates, the
    launch templates' user data), with the canaries each string holds; the value of the SSM
    configuration `parameter` is the one place allowed. Returns (leaks, what that value holds)."""
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=30) as resp:
        doc = json.loads(resp.read())
    texts = list(_strings(doc, ""))
    s3 = boto("s3")
    for bucket in s3.list_buckets()["Buckets"]:
        for obj in s3.list_objects_v2(Bucket=bucket["Name"]).get("Contents", []):
            body = s3.get_object(Bucket=bucket["Name"], Key=obj["Key"])["Body"].read()
            texts.append((f"s3://{bucket['Name']}/{obj['Key']}", body.decode("latin-1")))
    cfn = boto("cloudformation")
    for stack in cfn.describe_stacks()["Stacks"]:
        texts.append((stack["StackName"], json.dumps(stack, default=str)))
        body = cfn.get_template(StackName=stack["StackName"])["TemplateBody"]
        texts.append((f"template of {stack['StackName']}", json.dumps(body)))
    ec2 = boto("ec2")
    launch_templates = ec2.describe_launch_templates()["LaunchTemplates"]
    for lt in launch_templates:
        versions = ec2.describe_launch_template_versions(LaunchTemplateId=lt["LaunchTemplateId"])
        texts.extend(_strings(versions["LaunchTemplateVersions"], lt["LaunchTemplateName"]))
    for reservation in ec2.describe_instances()["Reservations"]:
        texts.extend(_strings(reservation["Instances"], "instances"))
    if launch_templates:  # the scan reads what it means to: the boot script, the uploaded template
        assert any("readonly SSM_PARAMETER=" in text for _, text in texts)
        assert any(where.startswith("s3://datomic-aws-templates-") for where, _ in texts)
    held: list[str] = []
    leaks = {}
    for where, text in texts:
        names = leaked(text, extra)
        if names and _is_the_parameter_value(doc, where, parameter):
            held = names
        elif names:
            leaks[where] = names
    return leaks, held


def _is_the_parameter_value(doc: dict[str, Any], where: str, parameter: str) -> bool:
    parts = where.split("/")
    if len(parts) != 5 or parts[1:3] != ["ssm", "Parameter"] or parts[4] != "value":
        return False
    return bool(doc["ssm"]["Parameter"][int(parts[3])]["name"] == parameter)


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
        assert_masked(diff)
        assert "datomic-auth-blob=********" in diff
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
