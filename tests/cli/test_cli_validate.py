"""Validate first, through the real process on a moto server (issue 9 point 3 and 9).

Invalid input exits 2 having made no mutating AWS call and left every file byte-identical; a path
that is missing (exit 2) or refused by the environment (exit 1), a malformed escape and a swapped
REGION are one `Error:` line, no traceback, no lock file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from datomic_aws.aws import is_mutating
from datomic_aws.locking import LOCK_NAME
from tests.cli.faulty_proxy import XHTML_PAGE, FaultyProxy
from tests.cli.fixtures import Proxy, Run, command_line
from tests.unit.test_template import PIN_LINES

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"
SECRET = "Sup3r-s3cret-pw-93x"


def _folder(tmp_path: Path, **cf_edits: str) -> Path:
    folder = tmp_path / "env"
    folder.mkdir()
    for name in ("transactor.properties", "cf.properties"):
        shutil.copyfile(SAMPLES / name, folder / name)
    cf = folder / "cf.properties"
    text = cf.read_text(encoding="latin-1")
    for old, new in cf_edits.items():
        assert old in text, old
        text = text.replace(old, new)
    cf.write_text(text, encoding="latin-1")
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _through(proxy: Proxy, *args: str, without_dac: bool = False) -> Run:
    """The CLI on the moto server through the proxy (which logs every operation). `without_dac`
    runs it without root's permission override, so that file modes apply (the suite runs as root
    in CI containers)."""
    prefix: list[str] = []
    if without_dac and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: file permissions cannot be exercised")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url}
    proc = subprocess.run(
        [*prefix, *command_line(), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def _mutating(proxy: Proxy) -> list[str]:
    # '' is an S3 REST call, which the proxy cannot name: counted as a write to be safe.
    return [op for op in proxy.log if not op or is_mutating(op)]


def _one_error_line(run: Run) -> str:
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("Error: "), run.stderr
    assert "Traceback" not in run.stderr
    return lines[0]


def _no_lock_file(*folders: Path) -> None:
    for folder in folders:
        if folder.is_dir():
            assert not (folder / LOCK_NAME).exists(), folder


# ---------------------------------------------------------------------------------------------
# apply: every check before the first write


@pytest.mark.parametrize(
    ("edits", "says"),
    [
        (
            {"java-xmx=": "java-xmx=64g"},
            ["java-xmx 64g does not fit in the 8192 MiB of m7i.large"],
        ),
        (
            {"aws-subnet-ids=": "aws-subnet-ids=subnet-0123456789abcdef0"},
            ["subnet subnet-0123456789abcdef0 does not exist in us-east-1"],
        ),
        (
            {"aws-instance-type=m7i.large": "aws-instance-type=c3.large"},
            ["c3.large is a previous-generation type", "m7i.large (general purpose)"],
        ),
        (
            {"java-opts=": "java-opts=-XX:+UseConcMarkSweepGC -XX:+UseParNewGC"},
            ["java-opts -XX:+UseConcMarkSweepGC", "java-opts -XX:+UseParNewGC", "-XX:+UseG1GC"],
        ),
        (
            {"datomic-version=": "datomic-version=0.8.3435"},
            ["datomic-version 0.8.3435 is older than 1.0.6726", "datomic-download-url"],
        ),
        (
            # One run lists every problem the AWS checks found.
            {
                "java-xmx=": "java-xmx=64g",
                "aws-subnet-ids=": "aws-subnet-ids=subnet-0123456789abcdef0",
            },
            ["java-xmx 64g does not fit", "subnet subnet-0123456789abcdef0 does not exist"],
        ),
        (
            {
                "java-opts=": "java-opts=-XX:MaxPermSize=256m",
                "datomic-version=": "datomic-version=0.9.5951",
                "aws-region=us-east-1": "aws-region=us-east-7",
            },
            ["-XX:MaxMetaspaceSize", "0.9.5951 is older", "'us-east-7' is not an AWS region"],
        ),
    ],
    ids=["xmx-64g", "unknown-subnet", "obsolete-type", "cms", "old-version", "aws-2", "file-3"],
)
def test_apply_refuses_invalid_input_before_any_write(
    proxy: Proxy, tmp_path: Path, edits: dict[str, str], says: list[str]
) -> None:
    folder = _folder(tmp_path, **edits)
    before = _snapshot(folder)
    run = _through(proxy, "--output", "json", "apply", "--yes", str(folder))
    assert run.code == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    doc = json.loads(run.stdout)
    messages = "\n".join(doc["error"]["messages"])
    for fragment in says:
        assert fragment in messages, messages
    assert _mutating(proxy) == [], proxy.log
    if proxy.log:
        # The error document counts what the refused run called, as a success's does.
        assert doc["aws_calls"]["mutating"] == 0 and doc["aws_calls"]["total"] > 0, doc
    after = _snapshot(folder)
    if proxy.log:
        # Valid files: the run took the folder lock before its AWS checks (empty once released).
        after.pop(LOCK_NAME, None)
    assert after == before
    assert not (folder / "cf.json").exists()


def test_apply_of_a_missing_folder_is_one_line_and_no_lock(proxy: Proxy, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "prod"
    run = _through(proxy, "apply", "--yes", str(missing))
    assert run.code == 2
    line = _one_error_line(run)
    assert str(missing) in line and "does not exist" in line
    assert list(tmp_path.iterdir()) == []
    assert proxy.log == []


# ---------------------------------------------------------------------------------------------
# the stack commands: REGION, STACK_NAME, the template's own region


def _template(tmp_path: Path, region: str = "us-east-1") -> Path:
    path = tmp_path / "cf.json"
    doc = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Metadata": {"DatomicAws": {"System": "orders", "Region": region}},
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["create-cf-stack", "datomic-orders", "us-east-1", "{template}"],
        ["update-stack", "--yes", "datomic-orders", "us-east-1", "{template}"],
        ["delete-cf-stack", "--yes", "datomic-orders", "us-east-1"],
        ["status", "datomic-orders", "us-east-1"],
    ],
    ids=["create", "update", "delete", "status"],
)
def test_swapped_region_is_refused_before_any_call(
    proxy: Proxy, tmp_path: Path, command: list[str]
) -> None:
    template = _template(tmp_path)
    args = [a.replace("{template}", str(template)) for a in command]
    run = _through(proxy, *args)
    assert run.code == 2, run.stderr
    line = _one_error_line(run)
    assert "REGION 'datomic-orders' is not an AWS region" in line and "swap" in line
    assert proxy.log == []
    _no_lock_file(tmp_path)


def test_region_other_than_the_templates_is_refused_naming_both(
    proxy: Proxy, tmp_path: Path
) -> None:
    template = _template(tmp_path, region="us-east-1")
    for command in ("create-cf-stack", "update-stack"):
        run = _through(proxy, command, "eu-west-1", "datomic-orders", str(template))
        assert run.code == 2, run.stderr
        line = _one_error_line(run)
        assert "eu-west-1" in line and "us-east-1" in line
    run = _through(proxy, "status", "eu-west-1", "datomic-orders", "--template", str(template))
    assert run.code == 2
    assert proxy.log == []


def test_bad_stack_name_and_unknown_region_are_refused(proxy: Proxy, tmp_path: Path) -> None:
    run = _through(proxy, "delete-cf-stack", "--yes", "us-east-1", "prod_a")
    assert run.code == 2
    assert "STACK_NAME 'prod_a'" in _one_error_line(run)
    run = _through(proxy, "status", "us-east-7", "datomic-orders")
    assert run.code == 2
    assert "'us-east-7' is not an AWS region" in _one_error_line(run)
    assert proxy.log == []


def test_template_not_utf8_or_not_json_is_one_line(proxy: Proxy, tmp_path: Path) -> None:
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"Description": "caf\xe9", "Resources": {}}')
    run = _through(proxy, "create-cf-stack", "us-east-1", "datomic-orders", str(latin))
    assert run.code == 2
    assert "not UTF-8" in _one_error_line(run)
    broken = tmp_path / "broken.json"
    broken.write_text("{nope", encoding="utf-8")
    run = _through(proxy, "update-stack", "us-east-1", "datomic-orders", str(broken))
    assert run.code == 2
    assert "not a JSON template" in _one_error_line(run)
    assert proxy.log == []


def test_template_datomic_aws_did_not_generate_is_refused_before_any_call(
    proxy: Proxy, tmp_path: Path
) -> None:
    # A template without our Metadata.DatomicAws.System names no system: deploying it would tag
    # the stack for a made-up one (the stack name), so create-cf-stack and update-stack refuse it.
    foreign = tmp_path / "foreign.json"
    doc = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}
    foreign.write_text(json.dumps(doc), encoding="utf-8")
    for command in ("create-cf-stack", "update-stack"):
        run = _through(
            proxy,
            command,
            "--yes" if command == "update-stack" else "--dry-run",
            "us-east-1",
            "datomic-orders",
            str(foreign),
        )
        assert run.code == 2, run.stderr
        line = _one_error_line(run)
        assert "not a template datomic-aws generated" in line and str(foreign) in line
    run = _through(proxy, "create-cf-stack", "us-east-1", "datomic-orders", str(foreign))
    assert run.code == 2, run.stderr
    assert proxy.log == []
    _no_lock_file(tmp_path)


@pytest.mark.parametrize(
    ("action", "command"),
    [
        ("sts:GetCallerIdentity", ["ensure-transactor", "--dry-run", "{transactor}"]),
        ("cloudformation:DescribeStacks", ["status", "us-east-1", "datomic-orders"]),
        ("dynamodb:DescribeTable", ["ensure-transactor", "--dry-run", "{transactor}"]),
    ],
    ids=["query-xml", "cfn-xml", "json"],
)
def test_a_well_formed_html_page_is_one_line_exit_1(
    endpoint: str, tmp_path: Path, action: str, command: list[str]
) -> None:
    # A proxy's XHTML page parses as XML: botocore's query parser then fails with a KeyError
    # unless the page is refused before it is parsed.
    folder = _folder(tmp_path)
    transactor = str(folder / "transactor.properties")
    before = _snapshot(folder)
    proxy = FaultyProxy(endpoint, html={action}, html_page=XHTML_PAGE)
    try:
        env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url}
        args = [a.replace("{transactor}", transactor) for a in command]
        proc = subprocess.run(
            [*command_line(), *args], capture_output=True, text=True, env=env, timeout=180
        )
    finally:
        proxy.close()
    assert proc.returncode == 1, proc.stderr
    line = _one_error_line(Run(proc.returncode, proc.stdout, proc.stderr))
    assert f"the answer to {action} is not an AWS response" in line
    assert _snapshot(folder) == before


@pytest.mark.parametrize(
    ("option", "variable"),
    [("notaurl", None), ("http://127.0.0.1:port", None), (None, "ftp:/x")],
    ids=["no-scheme", "bad-port", "env-scheme"],
)
def test_an_endpoint_url_that_is_not_one_is_exit_2_one_line(
    tmp_path: Path, option: str | None, variable: str | None
) -> None:
    # botocore refuses it with a bare ValueError when the first client is built.
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    if variable is not None:
        env["AWS_ENDPOINT_URL"] = variable
    args = ["--endpoint-url", option] if option is not None else []
    proc = subprocess.run(
        [*command_line(), *args, "status", "us-east-1", "datomic-orders"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    line = _one_error_line(Run(proc.returncode, proc.stdout, proc.stderr))
    assert proc.returncode == 2, proc.stderr
    assert "is not an endpoint URL" in line and str(option or variable) in line


def test_a_usage_error_with_output_json_is_one_json_document(tmp_path: Path) -> None:
    # click's own refusals (a file where DIR is wanted, a missing argument) keep --output json's
    # promise of one document on stdout.
    afile = tmp_path / "cf.properties"
    afile.write_text("aws-region=us-east-1\n", encoding="utf-8")
    for args in (["apply", str(afile)], ["apply"]):
        proc = subprocess.run(
            [*command_line(), "--output", "json", *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert proc.returncode == 2, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["command"] == "apply" and doc["error"]["exit_code"] == 2, doc
        assert doc["error"]["messages"][0].startswith("Error: "), doc
        assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------
# paths the operator got wrong (exit 2) or the environment refuses (exit 1)


def test_output_folder_missing_is_exit_2_one_line_no_lock(proxy: Proxy, tmp_path: Path) -> None:
    source = tmp_path / "transactor.properties"
    shutil.copyfile(SAMPLES / "transactor.properties", source)
    out = tmp_path / "missing" / "transactor.properties"
    run = _through(proxy, "ensure-transactor", str(source), str(out))
    assert run.code == 2
    assert "does not exist" in _one_error_line(run)
    _no_lock_file(tmp_path)
    assert proxy.log == []
    run = _through(
        proxy, "create-cf-template", str(source), str(SAMPLES / "cf.properties"), str(out)
    )
    assert run.code == 2
    _one_error_line(run)


def test_template_output_that_is_an_input_is_refused_files_intact(
    proxy: Proxy, tmp_path: Path
) -> None:
    # Arguments in the wrong order must not replace a properties file with the template.
    folder = _folder(
        tmp_path,
        **{
            "java-xmx=": "java-xmx=5734m",
            "datomic-version=": "datomic-version=1.0.7556",
            "aws-subnet-ids=": "aws-subnet-ids=subnet-0123456789abcdef0",
            "aws-security-group-id=": "aws-security-group-id=sg-0123456789abcdef0",
        },
    )
    t, cf = folder / "transactor.properties", folder / "cf.properties"
    # And what ensure-transactor writes for the configuration's pin (issue 10, issue 11).
    t.write_text(t.read_text(encoding="latin-1") + PIN_LINES, encoding="latin-1")
    written = _through(proxy, "create-cf-template", str(t), str(cf), str(folder / "cf.json"))
    assert written.code == 0, written.stderr  # valid files: only the order of the arguments
    (folder / "cf.json").unlink()
    before = _snapshot(folder)
    for out in (t, cf, folder / "." / "cf.properties"):
        run = _through(proxy, "create-cf-template", str(t), str(cf), str(out))
        assert run.code == 2, run.stderr
        line = _one_error_line(run)
        assert str(out) in line and "is also an input" in line
    assert _snapshot(folder) == before
    assert proxy.log == []


def test_unreadable_input_is_exit_1_one_line_no_lock(proxy: Proxy, tmp_path: Path) -> None:
    source = tmp_path / "transactor.properties"
    shutil.copyfile(SAMPLES / "transactor.properties", source)
    source.chmod(0o000)
    try:
        run = _through(proxy, "ensure-transactor", str(source), without_dac=True)
    finally:
        source.chmod(0o644)
    assert run.code == 1, run.stderr
    line = _one_error_line(run)
    assert str(source) in line and "cannot read the file" in line
    _no_lock_file(tmp_path)
    assert proxy.log == []


@pytest.mark.parametrize("command", ["ensure-cf", "apply"])
def test_read_only_folder_is_exit_1_one_line_no_lock(
    proxy: Proxy, tmp_path: Path, command: str
) -> None:
    folder = _folder(tmp_path)
    before = _snapshot(folder)
    target = str(folder / "cf.properties") if command == "ensure-cf" else str(folder)
    folder.chmod(0o555)
    try:
        run = _through(proxy, command, target, without_dac=True)
    finally:
        folder.chmod(0o755)
    assert run.code == 1, run.stderr
    line = _one_error_line(run)
    assert str(folder) in line and "cannot write in the folder" in line
    _no_lock_file(folder)
    assert _snapshot(folder) == before
    assert proxy.log == []


@pytest.mark.parametrize("command", ["ensure-transactor", "ensure-cf", "apply"])
def test_dry_run_in_a_read_only_folder_plans_and_writes_nothing(
    proxy: Proxy, tmp_path: Path, command: str
) -> None:
    # A dry run writes nothing (no file, no lock file): a read-only checkout can be planned.
    folder = _folder(tmp_path)
    before = _snapshot(folder)
    name = {"ensure-transactor": "transactor.properties", "ensure-cf": "cf.properties"}
    target = str(folder / name[command]) if command in name else str(folder)
    folder.chmod(0o555)
    try:
        run = _through(proxy, command, "--dry-run", target, without_dac=True)
    finally:
        folder.chmod(0o755)
    assert run.code == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert _snapshot(folder) == before
    assert _mutating(proxy) == [], proxy.log


def test_malformed_escape_is_exit_2_names_the_key_never_the_value(
    proxy: Proxy, tmp_path: Path
) -> None:
    source = tmp_path / "transactor.properties"
    text = (SAMPLES / "transactor.properties").read_text(encoding="latin-1")
    source.write_text(text + f"sql-password={SECRET[:5]}\\u12zz{SECRET[5:]}\n", encoding="latin-1")
    before = source.read_bytes()
    for output in ("text", "json"):
        run = _through(proxy, "--output", output, "ensure-transactor", str(source))
        assert run.code == 2, run.stderr
        line = _one_error_line(run)
        line_number = text.count("\n") + 1
        assert f"({source}:{line_number} sql-password)" in line
        for fragment in (SECRET[:5], SECRET[5:], "12zz"):
            assert fragment not in run.stderr + run.stdout
    assert source.read_bytes() == before
    _no_lock_file(tmp_path)
    assert proxy.log == []


def test_contradictory_transactor_file_is_refused_before_the_lock_and_any_call(
    proxy: Proxy, tmp_path: Path
) -> None:
    source = tmp_path / "transactor.properties"
    text = (SAMPLES / "transactor.properties").read_text(encoding="latin-1")
    text = text.replace("memory-index-threshold=32m", "memory-index-threshold=1g")
    text = text.replace(
        "aws-dynamodb-region=us-east-1", "aws-dynamodb-region=us-east-1\naws-region=eu-west-1"
    )
    source.write_text(text, encoding="latin-1")
    before = source.read_bytes()
    run = _through(proxy, "ensure-transactor", str(source))
    assert run.code == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("Error: ") for line in lines), run.stderr
    assert "aws-region eu-west-1 disagrees with aws-dynamodb-region us-east-1" in run.stderr
    assert "memory-index-threshold 1g is above memory-index-max 512m" in run.stderr
    assert source.read_bytes() == before
    _no_lock_file(tmp_path)
    assert proxy.log == []


def test_apply_refused_by_a_transactor_check_leaves_the_network_untouched(
    proxy: Proxy, boto: Any, tmp_path: Path
) -> None:
    # A table of the system's name whose key is not Datomic's: ensure-transactor's plan refuses it,
    # and ensure-cf, which ran its checks side by side, has written nothing either.
    boto("dynamodb").create_table(
        TableName="my-datomic-system",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    folder = _folder(tmp_path)
    before = _snapshot(folder)
    run = _through(proxy, "apply", "--yes", str(folder))
    assert run.code != 0, run.stderr
    assert "my-datomic-system" in run.stderr and "Traceback" not in run.stderr
    assert _mutating(proxy) == [], proxy.log
    assert "DescribeSecurityGroups" in proxy.log  # ensure-cf's checks did run
    after = _snapshot(folder)
    after.pop(LOCK_NAME, None)
    assert after == before
    groups = boto("ec2").describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["datomic-my-datomic-system-transactor"]}]
    )["SecurityGroups"]
    assert groups == []
