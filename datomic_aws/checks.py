"""Checks of the operator's arguments that run before any lock, AWS call or write.

Owns what a path argument must be (an INPUT readable, an OUTPUT's folder present and writable, an
apply folder with its two files), what a REGION argument must be (a region of one of the partitions
botocore knows) and a STACK_NAME (CloudFormation's pattern), and the agreement of REGION with the
region a template was generated for. Missing or malformed input is InvalidInput/UsageError (exit 2);
a path the environment refuses (permissions, read-only file system) is FileAccessError (exit 1).
No AWS call (botocore's endpoint data is a file shipped with botocore), no write, no print.
"""

from __future__ import annotations

import errno
import os
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from datomic_aws.errors import FileAccessError, InvalidInput, Problem, UsageError
from datomic_aws.properties import refuse_planted_link

if TYPE_CHECKING:
    from datomic_aws.properties import PropertiesText

# CloudFormation: "a letter, then letters, digits and hyphens, 128 characters at most".
STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")

APPLY_FILES = ("transactor.properties", "cf.properties")
APPLY_TEMPLATE = "cf.json"


@cache
def known_regions() -> frozenset[str]:
    """Every region of every partition botocore knows (aws, aws-cn, aws-us-gov, the iso ones).

    A region newer than the installed botocore is refused until botocore is upgraded: a typo such
    as `us-east-7` would otherwise be sent to AWS as a region and fail 25 calls later.

    From botocore's partitions.json (7 KB, what its endpoint rules resolve regions with), not
    endpoints.json (1.2 MB of per-service endpoints, ~50 ms to parse on every start); its
    `aws-global`-style entries are pseudo-regions of global endpoints, not regions.
    """
    import botocore.loaders

    data = botocore.loaders.create_loader().load_data("partitions")
    regions: set[str] = set()
    for partition in data.get("partitions", []):
        regions.update(r for r in partition.get("regions", {}) if not r.endswith("-global"))
    return frozenset(regions)


def is_known_region(name: str) -> bool:
    return name in known_regions()


def unknown_region_hint() -> str:
    return (
        "use a region AWS has, e.g. us-east-1, eu-west-1, cn-north-1, us-gov-west-1 (a region "
        "newer than the installed botocore needs botocore upgraded)"
    )


def _environment(path: str, exc: OSError, doing: str) -> FileAccessError:
    reason = exc.strerror or type(exc).__name__
    return FileAccessError(
        f"cannot {doing}: {reason}",
        path,
        "check the permissions of the file and its folder (and that the file system is writable)",
    )


def _missing(path: str, what: str, hint: str = "") -> InvalidInput:
    return InvalidInput([Problem(path, None, None, what, hint)])


def check_input(path: str | Path) -> None:
    """INPUT exists, is a file and can be read."""
    name = str(path)
    p = Path(path)
    try:
        os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        if not p.parent.is_dir():
            raise _missing(
                name, f"the folder {p.parent} does not exist", "check the path"
            ) from None
        raise _missing(
            name, f"cannot read the file: {os.strerror(errno.ENOENT)}", "check the path"
        ) from None
    except OSError as exc:  # a folder on the way that may not be searched
        raise _environment(name, exc, "read the file") from exc
    if p.is_dir():
        raise _missing(name, "is a folder, not a file", "name the properties file in it")
    try:
        with open(p, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise _environment(name, exc, "read the file") from exc


def check_properties_input(path: str | Path) -> PropertiesText:
    """INPUT is a readable properties file that parses (a malformed escape is named here); the
    file as read, for the caller to use rather than read it again."""
    from datomic_aws.config.common import read_properties

    check_input(path)
    return read_properties(path)


def check_output(path: str | Path, *, writable: bool = True) -> None:
    """OUTPUT can be written: its folder exists and takes new files (the write is atomic: a
    temporary file in that folder, then a rename), and OUTPUT itself is not a folder. A dry run
    (`writable=False`) writes nothing, so a read-only folder (a CI checkout) is fine for it."""
    name = str(path)
    refuse_planted_link(path)
    target = Path(os.path.realpath(path))
    folder = target.parent
    if target.is_dir():
        raise _missing(name, "is a folder, not a file", "name the file to write")
    if not folder.is_dir():
        raise _missing(
            name,
            f"the folder {Path(path).parent or '.'} does not exist",
            "create it first, or write OUTPUT into an existing folder",
        )
    if not writable:
        return
    if not os.access(folder, os.W_OK | os.X_OK):
        exc = OSError(errno.EACCES, os.strerror(errno.EACCES))
        raise _environment(str(folder), exc, "write in the folder")
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        exc = OSError(errno.EROFS, os.strerror(errno.EROFS))
        raise _environment(str(folder), exc, "write in the folder")


def check_output_distinct(output: str | Path, inputs: list[str | Path]) -> None:
    """An OUTPUT of another kind than the inputs (create-cf-template's JSON) is never one of them:
    arguments in the wrong order would otherwise replace a properties file with the template."""
    target = os.path.realpath(output)
    for path in inputs:
        if os.path.realpath(path) == target:
            raise _missing(
                str(output),
                f"is also an input ({path}): writing it would replace that file",
                "the arguments are TRANSACTOR_PROPS CF_PROPS OUTPUT_JSON, e.g. "
                "aws/prod/transactor.properties aws/prod/cf.properties aws/prod/cf.json",
            )


def check_apply_folder(
    directory: str | Path, *, writable: bool = True
) -> tuple[PropertiesText, PropertiesText]:
    """The apply folder exists, holds both properties files (readable), and can be written
    (unless `writable` is False: a dry run). Returns both files as read (APPLY_FILES' order)."""
    folder = Path(directory)
    if not folder.exists():
        raise _missing(str(folder), "the folder does not exist", "check the path")
    if not folder.is_dir():
        raise _missing(str(folder), "is not a folder", "give the environment folder (DIR)")
    missing = [folder / n for n in APPLY_FILES if not (folder / n).exists()]
    if missing:
        raise InvalidInput(
            [
                Problem(str(p), None, None, "missing", f"copy config_samples/{p.name} here")
                for p in missing
            ]
        )
    read = []
    for name in APPLY_FILES:
        read.append(check_properties_input(folder / name))
        check_output(folder / name, writable=writable)
    check_output(folder / APPLY_TEMPLATE, writable=writable)
    return read[0], read[1]


def check_stack_arguments(region: str, stack_name: str) -> None:
    """REGION is a known region and STACK_NAME a CloudFormation stack name: both before any call,
    so a swapped pair (`datomic-prod us-east-1`) is refused, not sent to AWS as a region."""
    if not is_known_region(region):
        swapped = is_known_region(stack_name)
        raise UsageError(
            f"REGION {region!r} is not an AWS region",
            "",
            "the arguments are REGION STACK_NAME; did you swap them?"
            if swapped
            else unknown_region_hint(),
        )
    if not STACK_NAME.match(stack_name):
        raise UsageError(
            f"STACK_NAME {stack_name!r} is not a CloudFormation stack name",
            "",
            "a letter, then up to 127 letters, digits and hyphens (e.g. datomic-prod)",
        )


def check_template_system(template_system: str | None, template_path: str) -> None:
    """A stack command that writes deploys only a template create-cf-template generated: the
    system it declares (Metadata.DatomicAws.System) is the one the stack is tagged for and checked
    against (design §3). Without it the stack would be tagged for a system nobody named."""
    if not template_system:
        raise InvalidInput(
            [
                Problem(
                    template_path,
                    None,
                    None,
                    "not a template datomic-aws generated (no Metadata.DatomicAws.System)",
                    "give the cf.json that `datomic-aws create-cf-template` wrote",
                )
            ]
        )


def check_template_region(region: str, template_region: str | None, template_path: str) -> None:
    """A template generated for one region deploys there only: its configuration parameter, group
    and subnets live in that region."""
    if template_region is not None and template_region != region:
        raise UsageError(
            f"REGION {region} is not the template's region {template_region}",
            template_path,
            f"deploy it in {template_region}, or regenerate it from a cf file with "
            f"aws-region={region}",
        )


def check_endpoint_url(endpoint_url: str | None) -> None:
    """--endpoint-url (or AWS_ENDPOINT_URL, which botocore reads itself) is an http(s) URL with a
    host: botocore refuses anything else with a bare ValueError when the first client is built."""
    from urllib.parse import urlsplit

    name = "--endpoint-url" if endpoint_url else "AWS_ENDPOINT_URL"
    url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if not url:
        return
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # a port that is not a number raises ValueError
    except ValueError:
        valid = False
    if not valid:
        raise UsageError(
            f"{name} {url!r} is not an endpoint URL",
            "",
            "give http:// or https:// and a host, e.g. http://127.0.0.1:5000",
        )
