"""Where the instance downloads Datomic Pro from: the rules for `datomic-download-url`.

Owns what a download location may be (an `https://` URL, or `s3://bucket/key` read with the
instance role) and the problems of one that may not, and which SHA-256 the instance verifies the
zip against (`datomic-zip-sha256`, required with a location of the operator's; else the digest
config/era.py knows for the public release). The value is published in the template and
the user data (and so in the boot log and `cf.json`), so a location that carries a credential, a
URL's user-info or a query string (a presigned URL's signature, a token parameter), is refused, and
no message ever quotes the value: its secret part would be printed with it. Pure: no AWS, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from datomic_aws.config.era import release_sha256
from datomic_aws.errors import Problem

KEY = "datomic-download-url"
SHA_KEY = "datomic-zip-sha256"

HTTPS = "https://"
S3 = "s3://"

# Characters the value may never hold: it is rendered into the boot script as a single-quoted
# shell word and into the template through Fn::Sub (`$`), and curl or the AWS CLI get it as one
# argument (blanks, control characters).
_UNSAFE = re.compile(r"[\s'\"\\`$\x00-\x1f\x7f]")
# An S3 bucket name (general purpose buckets): 3-63 lowercase letters, digits, dots and hyphens,
# beginning and ending with a letter or digit.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# An object key the grant can name exactly: no `*` or `?` (IAM wildcards in a resource ARN would
# widen s3:GetObject beyond the one object) and no `${` (an IAM policy variable).
_S3_KEY = re.compile(r"^[A-Za-z0-9!()+,.:;=_~/-]+$")

# The location is rendered into the user data, which EC2 refuses above 16 KB: the script itself
# takes most of that.
MAX_LENGTH = 512

_PRIVATE_COPY = (
    "keep the release in an S3 bucket of the account and write s3://bucket/key: the instance "
    "reads it with its role, and the tool grants s3:GetObject on exactly that object"
)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @property
    def url(self) -> str:
        return f"{S3}{self.bucket}/{self.key}"


def s3_location(url: str | None) -> S3Location | None:
    """The bucket and key of an `s3://` download location already accepted by `url_problems`."""
    if url is None or not url.startswith(S3):
        return None
    bucket, _, key = url[len(S3) :].partition("/")
    return S3Location(bucket, key)


def url_problems(path: str, line: int | None, url: str | None) -> list[Problem]:
    """At most one problem for the download location; its message never quotes the value."""
    if url is None:
        return []
    reason = _refusal(url)
    if reason is None:
        return []
    message, hint = reason
    return [Problem(path, line, KEY, f"{KEY} {message}", hint)]


def _refusal(url: str) -> tuple[str, str] | None:
    scheme = HTTPS if url.startswith(HTTPS) else S3 if url.startswith(S3) else None
    if scheme is None:
        return (
            "must be an https:// URL or an s3://bucket/key location",
            f"plain http, ftp and file URLs are refused; {_PRIVATE_COPY}",
        )
    rest = url[len(scheme) :]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        return (
            "must not carry user-info (user:password@ or token@): the URL is published in the "
            "template, the user data and the boot log",
            f"remove the user-info; {_PRIVATE_COPY}",
        )
    if "?" in rest or "#" in rest:
        return (
            "must not carry a query string or fragment (a presigned URL's signature or a token "
            "would be published in the template, the user data and the boot log)",
            f"use a URL without ?...; {_PRIVATE_COPY}",
        )
    if len(url) > MAX_LENGTH:
        return (f"is longer than {MAX_LENGTH} characters", "use a shorter path")
    if _UNSAFE.search(url):
        return ("must not hold blanks, quotes, backslashes, backticks or $", "")
    if scheme == HTTPS:
        if not authority:
            return (
                "has no host after https://",
                "e.g. https://host/path/datomic-pro-<version>.zip",
            )
        return None
    return _s3_refusal(rest)


def _s3_refusal(rest: str) -> tuple[str, str] | None:
    bucket, slash, key = rest.partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        return (
            "does not name an S3 bucket after s3:// (3-63 lowercase letters, digits, dots, hyphens)",
            "write s3://bucket/path/to/datomic-pro-<version>.zip",
        )
    if not slash or not key or key.endswith("/") or not _S3_KEY.match(key):
        return (
            "must name one object, s3://bucket/key, whose key holds only letters, digits and "
            "! ( ) + , . : ; = _ ~ / - (no * or ?: the role is granted that object only)",
            "write s3://bucket/path/to/datomic-pro-<version>.zip",
        )
    return None


def pinned_sha256(url: str | None, zip_sha256: str | None, version: str | None) -> str | None:
    """The SHA-256 the instance checks the zip against: the file's, or for the public release the
    digest the tool knows for `version` (None: the download is not verified)."""
    if zip_sha256:
        return zip_sha256
    return release_sha256(version) if url is None else None


def digest_problems(
    path: str, line: int | None, url: str | None, zip_sha256: str | None
) -> list[Problem]:
    """A location of the operator's comes with the SHA-256 of what must be found there."""
    if url is None or zip_sha256:
        return []
    return [
        Problem(
            path,
            line,
            KEY,
            f"{KEY} needs {SHA_KEY}: a zip from a location of your own is installed only if its "
            "SHA-256 is the one the file states",
            f"add {SHA_KEY}=<the output of sha256sum datomic-pro-<version>.zip>",
        )
    ]


def unverified_warning(
    path: str, line: int | None, url: str | None, zip_sha256: str | None, version: str | None
) -> str | None:
    """The public release of a version whose digest the tool does not know is not verified."""
    if version is None or pinned_sha256(url, zip_sha256, version) is not None:
        return None
    where = path if line is None else f"{path}:{line}"
    return (
        f"{where} datomic-version {version}: datomic-aws knows no SHA-256 of its zip, so the "
        f"instance installs it unverified; set {SHA_KEY} (sha256sum datomic-pro-{version}.zip)"
    )
