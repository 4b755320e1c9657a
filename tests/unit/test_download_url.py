"""datomic-download-url: only https:// and s3://bucket/key, never a credential, never quoted."""

from __future__ import annotations

import pytest

from datomic_aws.config.cf import CfSpec, spec_from
from datomic_aws.config.download import S3Location, s3_location, url_problems
from datomic_aws.errors import ExitCode, InvalidInput
from datomic_aws.properties import PropertiesText

BASE = "aws-region=us-east-1\naws-instance-type=m7i.large\n"
CANARY = "CANARY7f3a"
KEY = "datomic-download-url"


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
    assert spec_of(BASE + f"{KEY}={url}\n").download_url == url
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
    spec = spec_of(BASE + f"{KEY}={url}\n")
    assert spec.download_url == url
    assert s3_location(spec.download_url) == S3Location(bucket, key)
    assert S3Location(bucket, key).url == url


def test_blank_is_the_public_release() -> None:
    assert spec_of(BASE + f"{KEY}=\n").download_url is None
    assert url_problems("cf.properties", None, None) == []
