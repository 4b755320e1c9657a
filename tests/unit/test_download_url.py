"""datomic-download-url: only https:// and s3://bucket/key, never a credential, never quoted."""

from __future__ import annotations

import pytest

from datomic_aws.config.cf import LATEST_DATOMIC_VERSION, CfSpec, spec_from
from datomic_aws.config.download import (
    MAX_LENGTH,
    S3Location,
    pinned_sha256,
    s3_location,
    url_problems,
)
from datomic_aws.config.era import RELEASE_SHA256, release_sha256
from datomic_aws.errors import ExitCode, InvalidInput
from datomic_aws.properties import PropertiesText

BASE = "aws-region=us-east-1\naws-instance-type=m7i.large\n"
CANARY = "CANARY7f3a"
KEY = "datomic-download-url"
SHA = "0123456789abcdef" * 4
WITH_SHA = f"datomic-zip-sha256={SHA}\n"


def spec_of(text: str) -> CfSpec:
    return spec_from(PropertiesText(text, "cf.properties"))


def refusal(url: str) -> tuple[InvalidInput, str]:
    with pytest.raises(InvalidInput) as info:
        spec_of(BASE + f"{KEY}={url}\n")
    err = info.value
    return err, "\n".join(err.lines()) + "\n" + "\n".join(
        f"{p.message} {p.hint} {p.where}" for p in err.problems
    )


# Each form carries CANARY where its secret is; none may appear in any message.
USER_INFO = [
    f"https://user:{CANARY}@dl.sitehost.test/datomic-pro.zip",
    f"https://{CANARY}@dl.sitehost.test/datomic-pro.zip",
    f"https://user:{CANARY}@dl.sitehost.test",
    f"https://user:{CANARY}@dl.sitehost.test:8443/d.zip",
    f"s3://user:{CANARY}@sitebucket/key.zip",
    f"s3://{CANARY}@sitebucket/key.zip",
]
QUERY = [
    f"https://sitebucket.s3.amazonaws.com/d.zip?X-Amz-Signature={CANARY}&X-Amz-Expires=60",
    f"https://dl.sitehost.test/d.zip?token={CANARY}",
    f"https://dl.sitehost.test/d.zip?{CANARY}",
    f"https://dl.sitehost.test?sig={CANARY}",
    f"https://dl.sitehost.test/d.zip#{CANARY}",
    "https://dl.sitehost.test/d.zip?",
    f"s3://sitebucket/key.zip?versionId={CANARY}",
]
SCHEME = [
    f"http://dl.sitehost.test/d.zip?t={CANARY}",
    f"ftp://user:{CANARY}@dl.sitehost.test/d.zip",
    f"file:///tmp/{CANARY}.zip",
    f"HTTPS://user:{CANARY}@dl.sitehost.test/d.zip",
    f"//dl.sitehost.test/{CANARY}.zip",
]
SHAPE = [
    f"https://dl.sitehost.test/{CANARY} d.zip",
    f"https://dl.sitehost.test/{CANARY}'d.zip",
    f"https://dl.sitehost.test/{CANARY}$(id).zip",
    f"https://dl.sitehost.test/{CANARY}`id`.zip",
    f"https:///{CANARY}.zip",
    f"s3://Bucket_{CANARY}/key.zip",
    "s3://sitebucket",
    "s3://sitebucket/",
    "s3://sitebucket/folder/",
    f"https://dl.sitehost.test/{CANARY}/" + "a" * MAX_LENGTH + ".zip",
    f"s3://sitebucket/{CANARY}*.zip",
    f"s3://sitebucket/{CANARY}/${{aws:username}}.zip",
    f"s3://b/{CANARY}.zip",
    f"s3://sitebucket..name/{CANARY}.zip",
]


@pytest.mark.parametrize("url", USER_INFO + QUERY + SCHEME + SHAPE)
def test_refused_with_file_line_and_key_never_the_secret(url: str) -> None:
    err, text = refusal(url)
    assert err.exit_code == ExitCode.USAGE == 2
    assert [(p.key, p.line, p.file) for p in err.problems] == [(KEY, 3, "cf.properties")]
    assert "cf.properties:3 datomic-download-url" in text
    assert CANARY not in text
    # Nothing of the value is quoted, not even its host or bucket.
    assert "sitehost" not in text and "sitebucket" not in text


@pytest.mark.parametrize("url", USER_INFO)
def test_user_info_is_named(url: str) -> None:
    _, text = refusal(url)
    assert "user-info" in text and "s3://bucket/key" in text


@pytest.mark.parametrize("url", QUERY)
def test_query_string_is_named_and_s3_offered(url: str) -> None:
    _, text = refusal(url)
    assert "query string" in text and "s3://bucket/key" in text


@pytest.mark.parametrize(
    "url",
    [
        "https://downloads.example.com/datomic-pro-1.0.7556.zip",
        "https://downloads.example.com:8443/releases/datomic-pro.zip",
        "https://my-bucket.s3.eu-west-1.amazonaws.com/datomic/datomic-pro-1.0.7556.zip",
        "https://host/path/with@at-in-the-path.zip",
    ],
)
def test_https_urls_are_accepted(url: str) -> None:
    assert spec_of(BASE + f"{KEY}={url}\n" + WITH_SHA).download_url == url
    assert s3_location(url) is None


@pytest.mark.parametrize(
    ("url", "bucket", "key"),
    [
        ("s3://my-bucket/datomic-pro-1.0.7556.zip", "my-bucket", "datomic-pro-1.0.7556.zip"),
        (
            "s3://my.bucket.1/releases/v1/datomic-pro.zip",
            "my.bucket.1",
            "releases/v1/datomic-pro.zip",
        ),
    ],
)
def test_s3_locations_are_accepted(url: str, bucket: str, key: str) -> None:
    spec = spec_of(BASE + f"{KEY}={url}\n" + WITH_SHA)
    assert spec.download_url == url
    assert s3_location(spec.download_url) == S3Location(bucket, key)
    assert S3Location(bucket, key).url == url


def test_blank_is_the_public_release() -> None:
    assert spec_of(BASE + f"{KEY}=\n").download_url is None
    assert url_problems("cf.properties", None, None) == []


@pytest.mark.parametrize(
    "url", ["https://dl.sitehost.test/datomic-pro.zip", "s3://sitebucket/datomic-pro.zip"]
)
def test_a_custom_location_needs_the_sha256_of_its_zip(url: str) -> None:
    err, text = refusal(url)
    assert [(p.key, p.line) for p in err.problems] == [(KEY, 3)]
    assert "datomic-download-url needs datomic-zip-sha256" in text
    assert "sitehost" not in text and "sitebucket" not in text
    assert spec_of(BASE + f"{KEY}={url}\n" + WITH_SHA).zip_sha256 == SHA


def test_the_default_release_carries_its_sha256() -> None:
    """The version ensure-cf pins by default has a digest: raising LATEST_DATOMIC_VERSION needs
    the new release's SHA-256 in config/era.py too."""
    assert LATEST_DATOMIC_VERSION in RELEASE_SHA256
    assert all(len(v) == 64 and v == v.lower() for v in RELEASE_SHA256.values())
    assert (
        pinned_sha256(None, None, LATEST_DATOMIC_VERSION) == RELEASE_SHA256[LATEST_DATOMIC_VERSION]
    )
    # The file's own value wins; a location of the operator's has only the file's.
    assert pinned_sha256(None, SHA, LATEST_DATOMIC_VERSION) == SHA
    assert pinned_sha256("s3://b/k.zip", SHA, LATEST_DATOMIC_VERSION) == SHA
    assert pinned_sha256("s3://b/k.zip", None, LATEST_DATOMIC_VERSION) is None
    assert release_sha256(None) is None and release_sha256("1.0.6726") is None


def test_an_unknown_release_without_sha256_is_warned_about() -> None:
    spec = spec_of(BASE + "datomic-version=1.0.6726\n")
    (warning,) = [w for w in spec.warnings if "SHA-256" in w]
    assert warning.startswith("cf.properties:3 datomic-version 1.0.6726")
    assert "unverified" in warning and "datomic-zip-sha256" in warning
    assert not spec_of(BASE + "datomic-version=1.0.6726\n" + WITH_SHA).warnings
    assert not spec_of(BASE + f"datomic-version={LATEST_DATOMIC_VERSION}\n").warnings
    assert not spec_of(BASE).warnings  # blank: ensure-cf pins the latest, whose digest is known
