"""Datomic-era values that today's platform refuses: JVM flags current JDKs removed, Datomic Pro
releases the boot path cannot download, and the license key those releases needed.

Owns the rules and their sentences (each names the value and its modern replacement); the checks
that need both files (license-key against datomic-version) are here too; and the SHA-256 of the
public release zips the tool pins by default, with where each value comes from. Pure: no AWS, no
I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from datomic_aws.errors import Problem

# Reference §1: since Datomic Pro 1.0.6726 (2023-04) the releases are free, need no license key,
# and are published at https://datomic-pro-downloads.s3.amazonaws.com/<VERSION>/...; older
# releases are not in that bucket.
FREE_SINCE = (1, 0, 6726)
FREE_SINCE_TEXT = "1.0.6726"

# The SHA-256 of each public release zip the tool may pin by default
# (https://datomic-pro-downloads.s3.amazonaws.com/<VERSION>/datomic-pro-<VERSION>.zip): the boot
# script verifies the download against it. Datomic publishes no checksum beside its zips, so each
# value comes from a package definition that pins the .zip file itself, and its source is named.
# Raising the tool's newest version (config/cf.py LATEST_DATOMIC_VERSION) needs its digest here
# (tests/unit/test_download_url.py holds them together).
RELEASE_SHA256 = {
    # The AUR package datomic-bin, PKGBUILD at pkgver=1.0.7556 pkgrel=2 (GitHub mirror
    # archlinux/aur, path PKGBUILD): sha256sums[0], the source
    # datomic-pro-downloads.s3.amazonaws.com/1.0.7556/datomic-pro-1.0.7556.zip.
    "1.0.7556": "c4849387ef016d43f951c581950ecd522898b581bcdc0e9ccc12cc4028c06c50",
}

# The JDK the boot script installs (Amazon Corretto 21). Flags are judged against it.
BOOT_JDK = "JDK 21"

_DROP_FOR_G1 = "drop it: G1 is the default collector (or write -XX:+UseG1GC)"


@dataclass(frozen=True)
class RemovedFlag:
    pattern: re.Pattern[str]
    why: str
    instead: str


# Each pattern matches one whitespace-separated java-opts item. `-XX:+Foo`, `-XX:-Foo` and
# `-XX:Foo=value` are the JVM's spellings of a flag.
REMOVED_JVM_FLAGS = (
    RemovedFlag(
        re.compile(r"-XX:[+-]UseConcMarkSweepGC"),
        "the CMS collector was removed in JDK 14",
        _DROP_FOR_G1,
    ),
    RemovedFlag(re.compile(r"-XX:[+-]UseParNewGC"), "ParNew was removed in JDK 10", _DROP_FOR_G1),
    RemovedFlag(
        re.compile(r"-XX:(?:[+-]\w*CMS\w*|\w*CMS\w*=\S*)"),
        "CMS tuning went with the CMS collector in JDK 14",
        "drop it; G1 (the default) sizes itself, -XX:MaxGCPauseMillis sets its pause goal",
    ),
    RemovedFlag(
        re.compile(r"-XX:(?:Max)?PermSize=\S*"),
        "the permanent generation is gone since JDK 8 and the flag is refused since JDK 17",
        "use -XX:MaxMetaspaceSize=<size>, or drop it",
    ),
    RemovedFlag(
        re.compile(r"-XX:[+-]UseParallelOldGC"),
        "it was removed in JDK 15",
        "write -XX:+UseParallelGC, or drop it for G1 (the default)",
    ),
    RemovedFlag(
        re.compile(
            r"-XX:[+-](?:PrintGCDateStamps|PrintGCTimeStamps|PrintTenuringDistribution|"
            r"PrintGCApplicationStoppedTime|PrintGCApplicationConcurrentTime|"
            r"PrintAdaptiveSizePolicy|PrintHeapAtGC|UseGCLogFileRotation)"
            r"|-XX:(?:NumberOfGCLogFiles|GCLogFileSize)=\S*"
        ),
        "GC logging moved to unified logging in JDK 9 and this flag was removed",
        "use -Xlog:gc*:file=<path>:time,uptime (or drop it)",
    ),
    RemovedFlag(re.compile(r"-d(?:32|64)"), "it was removed in JDK 10", "drop it"),
)


def removed_flag(item: str) -> RemovedFlag | None:
    for flag in REMOVED_JVM_FLAGS:
        if flag.pattern.fullmatch(item):
            return flag
    return None


def java_opts_problems(path: str, line: int | None, java_opts: str | None) -> list[Problem]:
    """One problem per JVM flag that the instance's JDK refuses to start with."""
    problems = []
    for item in (java_opts or "").split():
        flag = removed_flag(item)
        if flag is not None:
            problems.append(
                Problem(
                    path,
                    line,
                    "java-opts",
                    f"java-opts {item}: {flag.why}; the {BOOT_JDK} the instance runs refuses to "
                    "start with it",
                    flag.instead,
                )
            )
    return problems


def release_sha256(version: str | None) -> str | None:
    """The digest of the public release zip of `version`, when the tool knows it."""
    return RELEASE_SHA256.get(version) if version else None


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def is_free_release(version: str) -> bool:
    return version_tuple(version) >= FREE_SINCE


def version_problems(
    path: str, line: int | None, version: str | None, download_url: str | None, latest: str
) -> list[Problem]:
    """A release before the free ones is not in the public bucket: the boot path cannot fetch it
    unless datomic-download-url says where it is."""
    if version is None or download_url is not None or is_free_release(version):
        return []
    return [
        Problem(
            path,
            line,
            "datomic-version",
            f"datomic-version {version} is older than {FREE_SINCE_TEXT}, the first free Datomic "
            "Pro release: it is not in the public download bucket, so the instance cannot fetch it",
            f"upgrade (clear datomic-version to pin {latest}), or set datomic-download-url to "
            "where you keep that release, with datomic-zip-sha256 (it then needs license-key in "
            "the transactor file)",
        )
    ]


def obsolete_license_warning(path: str, line: int | None) -> str:
    return (
        f"{path}:{line} license-key is obsolete since Datomic Pro {FREE_SINCE_TEXT} (free, "
        "Apache-2.0); it is accepted and passed through, but can be removed (only a "
        f"datomic-version before {FREE_SINCE_TEXT} needs it)"
    )


def license_findings(
    transactor_path: str,
    license_line: int | None,
    license_key: str | None,
    cf_path: str,
    version: str | None,
) -> tuple[list[Problem], list[str]]:
    """license-key against the release that will run: needed before 1.0.6726, obsolete since.

    Returns the problems and the warnings that replace the version-blind one of the transactor
    file (`obsolete_license_warning`).
    """
    if version is None or is_free_release(version):
        present = license_key is not None
        warnings = [obsolete_license_warning(transactor_path, license_line)] if present else []
        return [], warnings
    if license_key and license_key.strip():
        return [], []
    return [
        Problem(
            transactor_path,
            license_line,
            "license-key",
            f"license-key is required: datomic-version {version} ({cf_path}) is older than "
            f"{FREE_SINCE_TEXT}, the first release that needs no license",
            "add the license key of that release, or upgrade datomic-version",
        )
    ], []
