"""The transactor instance's root volume, from cf.properties (issue 13): `aws-root-volume-size`
(GiB), `aws-root-volume-type` and, for the provisioned-IOPS types, `aws-root-volume-iops`.

Owns the defaults and the checks between the keys that the schema (schemas/cf.schema.json: each
key's own range) cannot state. Pure: no AWS, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from datomic_aws.errors import Problem
from datomic_aws.properties import PropertiesText

SIZE_KEY = "aws-root-volume-size"
TYPE_KEY = "aws-root-volume-type"
IOPS_KEY = "aws-root-volume-iops"

# The OS, a JDK, the Datomic Pro release (unzipped) and its logs take a few GiB; 20 leaves room for
# the logs between two rotations. gp3: the current general-purpose SSD, cheaper than gp2 per GiB
# with 3000 IOPS included at any size.
DEFAULT_SIZE_GIB = 20
DEFAULT_TYPE = "gp3"

# EC2's provisioned IOPS: what each type includes or requires, and the most per GiB of size.
_GP3_BASELINE_IOPS = 3000
_MAX_IOPS_PER_GIB = {"gp3": 500, "io1": 50, "io2": 1000}
_NEEDS_IOPS = ("io1", "io2")


@dataclass(frozen=True)
class RootVolume:
    size_gib: int = DEFAULT_SIZE_GIB
    volume_type: str = DEFAULT_TYPE
    iops: int | None = None


def root_volume(
    props: PropertiesText, typed: Mapping[str, object], refused: Iterable[str | None] = ()
) -> tuple[RootVolume, list[Problem]]:
    """The root volume the file asks for, and what its keys say that cannot hold together; the
    keys among `refused` (the schema's problems: each key's own range) are not checked again."""
    size = typed.get(SIZE_KEY, DEFAULT_SIZE_GIB)
    kind = typed.get(TYPE_KEY, DEFAULT_TYPE)
    iops = typed.get(IOPS_KEY)
    volume = RootVolume(
        size if isinstance(size, int) else DEFAULT_SIZE_GIB,
        kind if isinstance(kind, str) else DEFAULT_TYPE,
        iops if isinstance(iops, int) else None,
    )
    if {SIZE_KEY, TYPE_KEY, IOPS_KEY} & set(refused):
        return volume, []
    return volume, _problems(props, volume)


def _problems(props: PropertiesText, v: RootVolume) -> list[Problem]:
    kind, iops = v.volume_type, v.iops
    if kind in _NEEDS_IOPS and iops is None:
        return [
            Problem.at(
                props,
                TYPE_KEY,
                f"{TYPE_KEY}={kind} needs {IOPS_KEY}: {kind} volumes have the IOPS they are given",
                f"add {IOPS_KEY} (e.g. 3000), or use gp3, which includes 3000 IOPS",
            )
        ]
    if iops is None:
        return []
    if kind == "gp2":
        return [
            Problem.at(
                props,
                IOPS_KEY,
                f"{IOPS_KEY} does not apply to gp2 volumes (their IOPS follow their size)",
                f"remove {IOPS_KEY}, or use {TYPE_KEY}=gp3 to set IOPS",
            )
        ]
    if kind == "gp3" and iops < _GP3_BASELINE_IOPS:
        return [
            Problem.at(
                props,
                IOPS_KEY,
                f"{IOPS_KEY}={iops} is below the {_GP3_BASELINE_IOPS} IOPS every gp3 volume has",
                f"remove {IOPS_KEY} (gp3 includes {_GP3_BASELINE_IOPS}), or set more",
            )
        ]
    most = _MAX_IOPS_PER_GIB[kind] * v.size_gib
    if iops > most:
        return [
            Problem.at(
                props,
                IOPS_KEY,
                f"{IOPS_KEY}={iops} is more than a {v.size_gib} GiB {kind} volume allows "
                f"({_MAX_IOPS_PER_GIB[kind]} per GiB: {most})",
                f"lower {IOPS_KEY}, or raise {SIZE_KEY} to at least "
                f"{-(-iops // _MAX_IOPS_PER_GIB[kind])}",
            )
        ]
    return []
