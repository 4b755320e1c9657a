"""Issue 11: a public CIDR in aws-ingress-cidrs needs aws-ingress-allow-public=true.

Through the real process, behind a recording proxy in front of the moto server: without the
opt-in, ensure-cf, create-cf-template and apply exit 2 naming the key and the rule, and no request
at all reaches AWS.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.cli.fixtures import Proxy

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"
SAMPLE_CIDRS = "aws-ingress-cidrs=172.31.0.0/16"


def _folder(tmp_path: Path, cidrs: str, *extra: str) -> Path:
    for name in ("transactor.properties", "cf.properties"):
        shutil.copyfile(SAMPLES / name, tmp_path / name)
    cf = tmp_path / "cf.properties"
    text = cf.read_text(encoding="latin-1")
    assert SAMPLE_CIDRS in text
    cf.write_text(text.replace(SAMPLE_CIDRS, "\n".join((f"aws-ingress-cidrs={cidrs}", *extra))))
    return tmp_path


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0"])
def test_public_cidr_without_the_opt_in_exits_2_before_any_aws_call(
    cli: Any, proxy: Proxy, tmp_path: Path, cidr: str
) -> None:
    folder = _folder(tmp_path, f"10.0.0.0/8,{cidr}")
    cf = folder / "cf.properties"
    before = cf.read_bytes()
    run = cli("--output", "json", "ensure-cf", str(cf), env={"AWS_ENDPOINT_URL": proxy.url})
    assert run.code == 2, (run.stdout, run.stderr)
    doc = run.json
    assert doc["error"]["exit_code"] == 2
    text = "\n".join(doc["error"]["messages"])
    assert "aws-ingress-cidrs" in text and f"tcp/4334 from {cidr}" in text
    assert "aws-ingress-allow-public=true" in text
    # Refused while validating the file: no AWS call counted, none seen by the server.
    assert doc.get("aws_calls", {"total": 0})["total"] == 0
    assert proxy.log == []
    assert cf.read_bytes() == before
    assert "Traceback" not in run.stderr


def test_apply_and_template_refuse_it_too(cli: Any, proxy: Proxy, tmp_path: Path) -> None:
    folder = _folder(tmp_path, "0.0.0.0/0")
    env = {"AWS_ENDPOINT_URL": proxy.url}
    applied = cli("apply", str(folder), env=env)
    assert applied.code == 2, (applied.stdout, applied.stderr)
    assert "aws-ingress-cidrs" in applied.stderr and "0.0.0.0/0" in applied.stderr
    template = cli(
        "create-cf-template",
        str(folder / "transactor.properties"),
        str(folder / "cf.properties"),
        str(folder / "cf.json"),
        env=env,
    )
    assert template.code == 2, (template.stdout, template.stderr)
    assert "aws-ingress-allow-public" in template.stderr
    assert proxy.log == []
    assert not (folder / "cf.json").exists()


def test_with_the_opt_in_the_public_rule_is_made(cli: Any, boto: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path, "0.0.0.0/0", "aws-ingress-allow-public=true")
    assert cli("ensure-transactor", str(folder / "transactor.properties")).code == 0
    run = cli("ensure-cf", str(folder / "cf.properties"))
    assert run.code == 0, run.stderr
    values = dict(
        line.split("=", 1)
        for line in (folder / "cf.properties").read_text().splitlines()
        if line and not line.startswith("#") and "=" in line
    )
    group = boto("ec2").describe_security_groups(GroupIds=[values["aws-security-group-id"]])
    cidrs = {
        r["CidrIp"]
        for p in group["SecurityGroups"][0]["IpPermissions"]
        if p.get("FromPort") == 4334
        for r in p.get("IpRanges", [])
    }
    assert cidrs == {"0.0.0.0/0"}
