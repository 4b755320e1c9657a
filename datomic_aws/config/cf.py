"""The CloudFormation properties file (`cf.properties`) as a validated, typed, frozen spec.

Owns what each cf key means to the tool: schema validation (`cf.schema.json`) plus the checks a
schema cannot express (CIDRs, the opt-in a public CIDR needs, ingress group references), the warnings about Datomic-era keys, the
JVM heap arithmetic, the instance architecture rule and the newest Datomic Pro version the tool
knows. Everything here is pure: no AWS call, no write. Checks that need AWS (instance type offered,
RAM, VPC and subnets) live in app/ensure_cf.py.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datomic_aws.config.common import (
    load_schema,
    published_credential_problems,
    read_properties,
    validate,
)
from datomic_aws.config.download import digest_problems, unverified_warning, url_problems
from datomic_aws.config.era import java_opts_problems, version_problems
from datomic_aws.config.observe import ObserveSpec, observe_problems, observe_spec
from datomic_aws.config.volume import RootVolume, root_volume
from datomic_aws.errors import InvalidInput, Problem
from datomic_aws.properties import PropertiesText

# The newest Datomic Pro release this version of the tool was built and tested against; pinned into
# the file when datomic-version is blank, so an upgrade is always an explicit, reviewed edit.
LATEST_DATOMIC_VERSION = "1.0.7556"

# bin/transactor's own defaults (G1 with a short pause target), pinned into the file when blank so
# that the template's JavaOpts parameter always carries what the instance will run with.
DEFAULT_JAVA_OPTS = "-XX:+UseG1GC -XX:MaxGCPauseMillis=50"

# Datomic's rule, kept so existing files converge: 70% of the instance's RAM for the heap.
HEAP_SHARE = 0.70
# A heap above this share leaves too little for the OS, metaspace, threads and direct buffers.
MAX_HEAP_SHARE = 0.85

DEFAULT_GROUP_SIZE = 1

# Keys from Datomic's 2013-2018 cf files that no longer mean anything: noted, then ignored.
OBSOLETE_KEYS = {
    "datomic-deploy-s3-bucket": "the instance downloads Datomic Pro from its public release URL "
    "(or datomic-download-url) instead of Datomic's deploy bucket",
    "datomic-ami-64": "the template follows the latest Amazon Linux 2023 image (or aws-ami)",
}

# What a refusal of an instance type offers instead. Whether a type is of a previous generation is
# AWS's answer (DescribeInstanceTypes CurrentGeneration), read by ensure-cf, not a list kept here.
MODERN_ALTERNATIVES = (
    "m7i.large (general purpose), c7i.large (compute), r7i.large (memory), "
    "m7g.large (Graviton, arm64)"
)

_TYPE_PARTS = re.compile(r"^(?P<family>[a-z]+[0-9]*(?P<tail>[a-z0-9-]*))\.(?P<size>[a-z0-9-]+)$")
_GENERATION = re.compile(r"^[a-z]+(?P<digit>[0-9]+)(?P<rest>[a-z0-9-]*)$")
_SUBNET = re.compile(r"subnet-[0-9a-f]{8,17}")
_GROUP_ID = re.compile(r"^sg-[0-9a-f]{8,17}$")
_ACCOUNT = re.compile(r"^[0-9]{12}$")
_GROUP_NAME = re.compile(r"^(?!sg-)[A-Za-z0-9 ._:/()#,@\[\]+=&;{}!$*-]{1,255}$")

# The key that lets aws-ingress-cidrs hold a public CIDR. Datomic's samples opened TCP 4334 to
# 0.0.0.0/0 (reference §4), which on a default VPC's public subnets is the whole internet.
ALLOW_PUBLIC_KEY = "aws-ingress-allow-public"
# Not reachable from the internet: RFC 1918, the shared address space of carrier-grade NAT
# (RFC 6598) and IPv6 unique local addresses (RFC 4193). Any other CIDR counts as public.
PRIVATE_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)
PRIVATE_V6 = (ipaddress.IPv6Network("fc00::/7"),)


@dataclass(frozen=True)
class IngressGroup:
    """One `aws-ingress-groups` item: a group id or a group name, optionally in another account."""

    text: str
    group_id: str | None
    name: str | None
    account: str | None


@dataclass(frozen=True)
class CfSpec:
    path: str
    # None when the file does not say; ensure-cf then takes it from the transactor file next to it.
    system: str | None
    region: str
    instance_type: str
    monitoring: bool
    group_size: int
    java_xmx: str | None
    java_opts: str | None
    datomic_version: str | None
    download_url: str | None
    zip_sha256: str | None
    ami: str | None
    vpc_id: str | None
    subnet_ids: tuple[str, ...]
    security_group: str | None
    security_group_id: str | None
    ingress_groups: tuple[IngressGroup, ...]
    ingress_cidrs: tuple[str, ...]
    stack_name: str | None
    warnings: tuple[str, ...]
    # aws-ingress-allow-public=true: aws-ingress-cidrs may hold public CIDRs.
    allow_public_ingress: bool = False
    # aws-root-volume-size/-type/-iops (config/volume.py).
    root_volume: RootVolume = field(default_factory=RootVolume)
    # The opt-in observability keys (config/observe.py); all off by default.
    observe: ObserveSpec = field(default_factory=ObserveSpec)
    # Line of each schema key in the file (set or commented out), for problems found later.
    lines: Mapping[str, int] = field(default_factory=dict, hash=False, compare=False)

    def line_of(self, key: str) -> int | None:
        return self.lines.get(key)

    @property
    def architecture(self) -> str:
        return architecture_of(self.instance_type)


def architecture_of(instance_type: str) -> str:
    """`arm64` for Graviton families (a `g` right after the generation digit, and a1), else x86_64.

    m7g, c6gn, t4g, r8g, im4gn, is4gen, x2gd, g5g are Graviton; m7i, g4dn, x2idn, z1d are not. A pure
    rule so the template needs no AWS call; ensure-cf cross-checks it with DescribeInstanceTypes.
    """
    family = instance_type.split(".", 1)[0]
    if family == "a1":
        return "arm64"
    m = _GENERATION.match(family)
    if m and m.group("rest").startswith("g"):
        return "arm64"
    return "x86_64"


def instance_family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def heap_mib(size: str) -> int:
    """A JVM size (`2625m`, `4g`, `524288k`) in MiB, rounded down."""
    number, unit = int(size[:-1]), size[-1].lower()
    return {"k": number // 1024, "m": number, "g": number * 1024}[unit]


def default_xmx(memory_mib: int) -> str:
    return f"{int(memory_mib * HEAP_SHARE)}m"


def max_xmx_mib(memory_mib: int) -> int:
    return int(memory_mib * MAX_HEAP_SHARE)


def split_list(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _optional(values: Mapping[str, str], key: str) -> str | None:
    value = values.get(key, "").strip()
    return value or None


def _cidr_problems(
    props: PropertiesText, items: tuple[str, ...]
) -> tuple[list[str], list[Problem]]:
    key = "aws-ingress-cidrs"
    cidrs: list[str] = []
    problems: list[Problem] = []
    for item in items:
        if "/" not in item:
            problems.append(
                Problem(
                    props.path,
                    props.line_of(key),
                    key,
                    f"{key} item {item!r} is not a CIDR (address/prefix)",
                    "e.g. 10.0.0.0/16 or 2001:db8::/32; use /32 (IPv4) or /128 (IPv6) for one address",
                )
            )
            continue
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            problems.append(
                Problem(
                    props.path,
                    props.line_of(key),
                    key,
                    f"{key} item {item!r} is not an IPv4 or IPv6 CIDR",
                    "e.g. 10.0.0.0/16 or 2001:db8::/32",
                )
            )
            continue
        if str(network) != item:
            problems.append(
                Problem(
                    props.path,
                    props.line_of(key),
                    key,
                    f"{key} item {item!r} has host bits set or is not in canonical form",
                    f"write {network}",
                )
            )
            continue
        if str(network) not in cidrs:
            cidrs.append(str(network))
    return cidrs, problems


def is_private_cidr(cidr: str) -> bool:
    """Inside PRIVATE_V4 or PRIVATE_V6 (a CIDR already checked to be well formed)."""
    network = ipaddress.ip_network(cidr)
    if isinstance(network, ipaddress.IPv4Network):
        return any(network.subnet_of(private) for private in PRIVATE_V4)
    return any(network.subnet_of(private) for private in PRIVATE_V6)


def _public_problems(props: PropertiesText, cidrs: list[str], allowed: bool) -> list[Problem]:
    """Each public CIDR, unless the file opts in: TCP 4334 open to the internet is a decision
    the file must state, not a default carried over from Datomic's samples."""
    if allowed:
        return []
    key = "aws-ingress-cidrs"
    return [
        Problem(
            props.path,
            props.line_of(key),
            key,
            f"{key} item {cidr!r} is a public CIDR: the rule tcp/4334 from {cidr} would let "
            "anyone in it reach the transactor",
            f"allow your peers' private CIDRs or their security groups (aws-ingress-groups); "
            f"if the transactor must be reachable from public addresses, add "
            f"{ALLOW_PUBLIC_KEY}=true",
        )
        for cidr in cidrs
        if not is_private_cidr(cidr)
    ]


def parse_ingress_group(item: str) -> IngressGroup | None:
    account: str | None = None
    ref = item
    if ":" in item:
        head, _, tail = item.partition(":")
        if _ACCOUNT.match(head):
            account, ref = head, tail
    if _GROUP_ID.match(ref):
        return IngressGroup(item, ref, None, account)
    if _GROUP_NAME.match(ref):
        return IngressGroup(item, None, ref, account)
    return None


def _group_problems(
    props: PropertiesText, items: tuple[str, ...]
) -> tuple[list[IngressGroup], list[Problem]]:
    key = "aws-ingress-groups"
    groups: list[IngressGroup] = []
    problems: list[Problem] = []
    for item in items:
        parsed = parse_ingress_group(item)
        if parsed is None:
            problems.append(
                Problem(
                    props.path,
                    props.line_of(key),
                    key,
                    f"{key} item {item!r} is not a security group name or id",
                    "a comma-separated list of group names, sg- ids, or account:sg-id",
                )
            )
        elif parsed not in groups:
            groups.append(parsed)
    return groups, problems


def _warnings(
    props: PropertiesText, schema: Mapping[str, Any], values: Mapping[str, str]
) -> list[str]:
    known = set(schema.get("properties", {}))
    out: list[str] = []
    unverified = unverified_warning(
        props.path,
        props.line_of("datomic-version"),
        _optional(values, "datomic-download-url"),
        _optional(values, "datomic-zip-sha256"),
        _optional(values, "datomic-version"),
    )
    out += [unverified] if unverified else []
    for key, entry in props.entries().items():
        where = f"{props.path}:{entry.line}"
        if key not in known and not entry.nameable:
            # Not quoted: a bare word or a key with escapes may hold a secret.
            out.append(f"{where} is not a key=value setting datomic-aws knows; it is ignored")
        elif key in OBSOLETE_KEYS:
            out.append(f"{where} {key} is obsolete and ignored: {OBSOLETE_KEYS[key]}")
        elif key not in known:
            out.append(f"{where} {key} is not a cf key datomic-aws knows; it is ignored")
    return out


def _lines(props: PropertiesText, schema: Mapping[str, Any]) -> dict[str, int]:
    lines = {}
    for key in schema.get("properties", {}):
        line = props.line_of(key)
        if line is not None:
            lines[key] = line
    return lines


def _download_problems(props: PropertiesText, values: Mapping[str, str]) -> list[Problem]:
    url = _optional(values, "datomic-download-url")
    line = props.line_of("datomic-download-url")
    refused = url_problems(props.path, line, url)
    return refused or digest_problems(
        props.path, line, url, _optional(values, "datomic-zip-sha256")
    )


def spec_from(props: PropertiesText) -> CfSpec:
    """Validate every key (all problems at once) and build the spec; no AWS."""
    typed, problems = validate(props, "cf")
    values = props.values()
    cidrs, cidr_problems = _cidr_problems(props, split_list(values.get("aws-ingress-cidrs")))
    groups, group_problems = _group_problems(props, split_list(values.get("aws-ingress-groups")))
    allow_public = typed.get(ALLOW_PUBLIC_KEY) is True
    problems = problems + cidr_problems + group_problems
    problems += _public_problems(props, cidrs, allow_public)
    volume, volume_problems = root_volume(props, typed, (p.key for p in problems))
    problems += volume_problems
    problems += observe_problems(props, typed, {p.key for p in problems})
    if "java-opts" not in {p.key for p in problems}:
        problems += java_opts_problems(
            props.path, props.line_of("java-opts"), _optional(values, "java-opts")
        )
    problems += _download_problems(props, values)
    problems += published_credential_problems(props, "cf", problems)
    if "datomic-version" not in {p.key for p in problems}:
        problems += version_problems(
            props.path,
            props.line_of("datomic-version"),
            _optional(values, "datomic-version"),
            _optional(values, "datomic-download-url"),
            LATEST_DATOMIC_VERSION,
        )
    if problems:
        problems.sort(key=lambda p: (p.line is None, p.line or 0, p.key or ""))
        raise InvalidInput(problems)
    return CfSpec(
        path=props.path,
        system=_optional(values, "datomic-system"),
        region=str(typed["aws-region"]),
        instance_type=str(typed["aws-instance-type"]),
        monitoring=bool(typed.get("aws-instance-monitoring", True)),
        group_size=int(typed.get("aws-autoscaling-group-size", DEFAULT_GROUP_SIZE)),
        java_xmx=_optional(values, "java-xmx"),
        java_opts=_optional(values, "java-opts"),
        datomic_version=_optional(values, "datomic-version"),
        download_url=_optional(values, "datomic-download-url"),
        zip_sha256=(_optional(values, "datomic-zip-sha256") or "").lower() or None,
        ami=_optional(values, "aws-ami"),
        vpc_id=_optional(values, "aws-vpc-id"),
        subnet_ids=tuple(_SUBNET.findall(values.get("aws-subnet-ids", ""))),
        security_group=_optional(values, "aws-security-group"),
        security_group_id=_optional(values, "aws-security-group-id"),
        ingress_groups=tuple(groups),
        ingress_cidrs=tuple(cidrs),
        stack_name=_optional(values, "aws-stack-name"),
        warnings=tuple(_warnings(props, load_schema("cf"), values)),
        lines=_lines(props, load_schema("cf")),
        allow_public_ingress=allow_public,
        root_volume=volume,
        observe=observe_spec(props, typed),
    )


def load_cf(path: str | Path) -> tuple[PropertiesText, CfSpec]:
    props = read_properties(path)
    return props, spec_from(props)


def load_cf_text(text: str, path: str | Path) -> tuple[PropertiesText, CfSpec]:
    """The same from text already in memory (a file a step of this run rewrote or would)."""
    props = PropertiesText(text, str(path))
    return props, spec_from(props)
