"""cf.properties validation and the pure rules behind ensure-cf and the template (no AWS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from datomic_aws.app.ensure_cf import sibling_transactor
from datomic_aws.config.cf import (
    CfSpec,
    architecture_of,
    default_xmx,
    heap_mib,
    is_private_cidr,
    load_cf,
    max_xmx_mib,
    parse_ingress_group,
    spec_from,
)
from datomic_aws.errors import InvalidInput
from datomic_aws.properties import PropertiesText

# SAMPLES is not imported from conftest: with several conftest.py files in one run, the name
# `conftest` may resolve to either file.
SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"
BASE = "aws-region=us-east-1\naws-instance-type=m7i.large\n"


def spec_of(text: str, path: str = "cf.properties") -> CfSpec:
    return spec_from(PropertiesText(text, path))


def problems_of(text: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        spec_of(text)
    return info.value


def test_sample_loads_with_defaults() -> None:
    _, spec = load_cf(SAMPLES / "cf.properties")
    assert spec.system is None
    assert spec.region == "us-east-1"
    assert spec.instance_type == "m7i.large"
    assert spec.monitoring is True
    assert spec.group_size == 1
    assert spec.java_xmx is None and spec.datomic_version is None
    assert spec.ingress_cidrs == ("172.31.0.0/16",)
    assert spec.ingress_groups == ()
    assert spec.warnings == ()


def test_typed_values() -> None:
    spec = spec_of(
        BASE + "aws-instance-monitoring=FALSE\naws-autoscaling-group-size=2\n"
        "aws-subnet-ids=subnet-0123456789abcdef0 , subnet-0123456789abcdef1\n"
        "aws-ingress-cidrs=10.0.0.0/8, 2001:db8::/32,10.0.0.0/8\n"
        "aws-ingress-allow-public=true\n"
        "aws-ingress-groups=peers,sg-0123456789abcdef0,123456789012:sg-0123456789abcdef1\n"
        "datomic-zip-sha256=" + "AB" * 32 + "\n"
    )
    assert spec.monitoring is False
    assert spec.group_size == 2
    assert spec.subnet_ids == ("subnet-0123456789abcdef0", "subnet-0123456789abcdef1")
    assert spec.ingress_cidrs == ("10.0.0.0/8", "2001:db8::/32")
    assert [(g.name, g.group_id, g.account) for g in spec.ingress_groups] == [
        ("peers", None, None),
        (None, "sg-0123456789abcdef0", None),
        (None, "sg-0123456789abcdef1", "123456789012"),
    ]
    assert spec.zip_sha256 == "ab" * 32


def test_every_problem_is_listed_at_once_with_line_and_key() -> None:
    err = problems_of(
        "aws-region=us-east-1\n"
        "aws-instance-type=m7i.large\n"
        "aws-instance-monitoring=yes\n"
        "aws-autoscaling-group-size=0\n"
        "aws-ingress-cidrs=10.0.0.0/8,10.0.0.0/33\n"
        "java-xmx=4000\n"
    )
    where = {(p.key, p.line) for p in err.problems}
    assert where == {
        ("aws-instance-monitoring", 3),
        ("aws-autoscaling-group-size", 4),
        ("aws-ingress-cidrs", 5),
        ("java-xmx", 6),
    }
    text = "\n".join(err.lines())
    assert "cf.properties:3 aws-instance-monitoring" in text
    assert "must be true or false" in text
    assert "10.0.0.0/33" in text


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("aws-autoscaling-group-size=0", "aws-autoscaling-group-size"),
        ("aws-autoscaling-group-size=11", "aws-autoscaling-group-size"),
        ("aws-instance-monitoring=yes", "aws-instance-monitoring"),
        ("aws-ingress-cidrs=10.0.0.0/8,not-a-cidr/8", "aws-ingress-cidrs"),
        ("aws-ingress-cidrs=10.0.0.1", "aws-ingress-cidrs"),
        ("aws-ingress-cidrs=10.0.0.1/8", "aws-ingress-cidrs"),
        ("aws-ingress-cidrs=2001:db8::/129", "aws-ingress-cidrs"),
        ("aws-ingress-groups=peers,bad|name", "aws-ingress-groups"),
        ("aws-subnet-ids=subnet-1", "aws-subnet-ids"),
        ("java-opts=-Dx='y'", "java-opts"),
        ("datomic-version=latest", "datomic-version"),
        ("datomic-download-url=http://example.com/d.zip", "datomic-download-url"),
        ("datomic-zip-sha256=abc", "datomic-zip-sha256"),
        ("aws-ami=ubuntu", "aws-ami"),
        ("aws-security-group=sg-mine", "aws-security-group"),
        ("aws-stack-name=1stack", "aws-stack-name"),
    ],
)
def test_invalid_value_names_its_key(line: str, key: str) -> None:
    err = problems_of(BASE + line + "\n")
    assert [p.key for p in err.problems] == [key]
    assert err.problems[0].line == 3


def test_required_keys() -> None:
    err = problems_of("aws-instance-monitoring=true\n")
    assert {p.key for p in err.problems} == {"aws-region", "aws-instance-type"}


def test_malformed_instance_type_is_refused_without_aws() -> None:
    err = problems_of("aws-region=us-east-1\naws-instance-type=large\n")
    assert err.problems[0].key == "aws-instance-type"
    assert "m7i.large" in err.problems[0].hint


def test_cidr_with_host_bits_suggests_the_network() -> None:
    err = problems_of(BASE + "aws-ingress-cidrs=10.1.2.3/16\n")
    assert "10.1.0.0/16" in err.problems[0].hint


def test_obsolete_and_unknown_keys_are_warnings() -> None:
    spec = spec_of(
        BASE
        + "datomic-deploy-s3-bucket=deploy-a1b2c3\ndatomic-ami-64=ami-1234\naws-instnce-type=x\n"
    )
    assert len(spec.warnings) == 3
    assert spec.warnings[0].startswith("cf.properties:3 datomic-deploy-s3-bucket is obsolete")
    assert "datomic-ami-64 is obsolete" in spec.warnings[1]
    assert "aws-instnce-type is not a cf key" in spec.warnings[2]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        load_cf(tmp_path / "missing.properties")
    assert "cannot read" in info.value.problems[0].message


@pytest.mark.parametrize(
    ("instance_type", "arch"),
    [
        ("m7g.large", "arm64"),
        ("c6gn.xlarge", "arm64"),
        ("t4g.small", "arm64"),
        ("r8g.large", "arm64"),
        ("im4gn.large", "arm64"),
        ("is4gen.large", "arm64"),
        ("x2gd.medium", "arm64"),
        ("g5g.xlarge", "arm64"),
        ("a1.large", "arm64"),
        ("m7i.large", "x86_64"),
        ("g4dn.xlarge", "x86_64"),
        ("x2idn.16xlarge", "x86_64"),
        ("z1d.large", "x86_64"),
        ("c3.large", "x86_64"),
        ("m7i-flex.large", "x86_64"),
        ("u-6tb1.metal", "x86_64"),
    ],
)
def test_architecture_rule(instance_type: str, arch: str) -> None:
    assert architecture_of(instance_type) == arch


def test_heap_arithmetic() -> None:
    assert default_xmx(3750) == "2625m"  # Datomic's documented c3.large example
    assert default_xmx(8192) == "5734m"
    assert heap_mib("2625m") == 2625
    assert heap_mib("4g") == 4096
    assert heap_mib("4G") == 4096
    assert heap_mib("1048576k") == 1024
    assert max_xmx_mib(1000) == 850


def test_ingress_group_forms() -> None:
    assert parse_ingress_group("datomic") is not None
    assert parse_ingress_group("123456789012:peers") == parse_ingress_group("123456789012:peers")
    parsed = parse_ingress_group("123456789012:peers")
    assert parsed is not None and parsed.account == "123456789012" and parsed.name == "peers"
    assert parse_ingress_group("sg-") is None


@pytest.mark.parametrize(
    ("cf", "transactor"),
    [
        ("aws/prod/cf.properties", "aws/prod/transactor.properties"),
        ("aws/my-cf.properties", "aws/my-transactor.properties"),
        ("aws/prod_cf.properties", "aws/prod_transactor.properties"),
        ("aws/prodcf.properties", None),
        ("aws/network.properties", None),
    ],
)
def test_sibling_transactor(cf: str, transactor: str | None) -> None:
    found = sibling_transactor(cf)
    assert (str(found) if found else None) == transactor


# Issue 11: a public CIDR needs aws-ingress-allow-public=true; private ones never do.
PRIVATE_CIDRS = [
    "10.0.0.0/8",
    "10.20.0.0/16",
    "172.16.0.0/12",
    "172.31.0.0/16",
    "192.168.0.0/16",
    "192.168.1.7/32",
    "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
    "100.127.0.0/16",
    "fc00::/7",  # unique local addresses
    "fd12:3456:789a::/48",
]
PUBLIC_CIDRS = [
    "0.0.0.0/0",
    "::/0",
    "8.8.8.8/32",
    "203.0.113.0/24",
    "172.32.0.0/16",  # just past 172.16/12
    "100.128.0.0/16",  # just past 100.64/10
    "10.0.0.0/7",  # wider than 10/8
    "2001:db8::/32",
    "fe80::/10",
]


@pytest.mark.parametrize("cidr", PRIVATE_CIDRS)
def test_private_cidrs_need_no_opt_in(cidr: str) -> None:
    assert is_private_cidr(cidr)
    assert spec_of(BASE + f"aws-ingress-cidrs={cidr}\n").ingress_cidrs == (cidr,)


@pytest.mark.parametrize("cidr", PUBLIC_CIDRS)
def test_public_cidrs_are_refused_without_the_opt_in(cidr: str) -> None:
    assert not is_private_cidr(cidr)
    err = problems_of(BASE + f"aws-ingress-cidrs=10.0.0.0/8,{cidr}\n")
    (problem,) = err.problems
    assert (problem.key, problem.line) == ("aws-ingress-cidrs", 3)
    assert f"tcp/4334 from {cidr}" in problem.message
    assert "aws-ingress-allow-public=true" in problem.hint


@pytest.mark.parametrize("cidr", PUBLIC_CIDRS)
def test_public_cidrs_are_accepted_with_the_opt_in(cidr: str) -> None:
    spec = spec_of(BASE + f"aws-ingress-cidrs={cidr}\naws-ingress-allow-public=true\n")
    assert spec.ingress_cidrs == (cidr,)
    assert spec.allow_public_ingress is True


def test_every_public_cidr_is_named_and_false_is_no_opt_in() -> None:
    err = problems_of(
        BASE + "aws-ingress-cidrs=0.0.0.0/0,10.0.0.0/8,::/0\naws-ingress-allow-public=false\n"
    )
    assert [p.message.split("'")[1] for p in err.problems] == ["0.0.0.0/0", "::/0"]
    assert spec_of(BASE + "aws-ingress-cidrs=10.0.0.0/8\n").allow_public_ingress is False


def test_the_opt_in_must_be_a_boolean() -> None:
    err = problems_of(BASE + "aws-ingress-allow-public=yes\n")
    assert [p.key for p in err.problems] == ["aws-ingress-allow-public"]
    assert "must be true or false" in err.problems[0].message
