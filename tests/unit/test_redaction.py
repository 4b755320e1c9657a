"""Redaction by allowlist: what output may show of the operator's files (no AWS).

A properties file's diff shows values only for the keys the schemas know that name no secret;
every other value (an unknown key, an odd secret name, a continued value's next lines, a commented
assignment) is masked. Credentials inside any value or text are masked everywhere: a URL's
user-info, Oracle's `user/pass@`, `password=` driver parameters. Error messages quote a value only
under the same allowlist.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datomic_aws import render
from datomic_aws.changes import Result
from datomic_aws.config.cf import spec_from
from datomic_aws.config.common import _shown_value, is_secret_key, is_shown_key, validate
from datomic_aws.errors import InvalidInput
from datomic_aws.properties import PropertiesText, masked_lines, write_if_changed
from datomic_aws.secrets import MASK, has_credential, mask_credentials


@pytest.mark.parametrize(
    "key", ["sql-passwd", "metrics-api-key", "memcached-password", "sql-pwd", "x-apikey", "token"]
)
def test_odd_secret_key_names(key: str) -> None:
    assert is_secret_key(key) and not is_shown_key(key)


def test_allowlist_is_the_schemas_known_non_secret_keys() -> None:
    for key in ("aws-transactor-role", "sql-url", "port", "aws-vpc-id", "java-xmx", "sql-user"):
        assert is_shown_key(key), key
    for key in ("sql-password", "license-key", "memcached", "sql-driver-params", "typo-key"):
        assert not is_shown_key(key), key


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("jdbc:postgresql://dbuser:hunter2@db:5432/x", "jdbc:postgresql://********@db:5432/x"),
        ("https://ghp_tok3n@github.com/a.zip", "https://********@github.com/a.zip"),
        (
            "jdbc:oracle:thin:scott/tiger@db:1521:orcl",
            "jdbc:oracle:thin:scott/********@db:1521:orcl",
        ),
        ("ssl=true;password=hunter2;loginTimeout=5", "ssl=true;password=********;loginTimeout=5"),
        ("a?user=x&passwd=hunter2&b=1", "a?user=x&passwd=********&b=1"),
    ],
)
def test_credentials_inside_values_are_masked(text: str, masked: str) -> None:
    assert has_credential(text)
    assert mask_credentials(text) == masked
    assert mask_credentials(masked) == masked


@pytest.mark.parametrize(
    "text",
    ["jdbc:postgresql://db.internal:5432/datomic", "https://host/a/b@c", "s3://b/k@v", "m:11211"],
)
def test_ordinary_values_are_left_alone(text: str) -> None:
    assert not has_credential(text) and mask_credentials(text) == text


def test_masked_lines_continuations_comments_and_bom() -> None:
    text = (
        "\ufeffsql-password=head\\\n"
        "    tail\\\n"
        "  end\r\n"
        "sql-url=jdbc:postgresql://u:p@h/db\n"
        "#sql-passwd=old\n"
        "# prose with jdbc:oracle:thin:scott/tiger@db:1521:orcl\n"
        "memcached : cache:11211\n"
        "port=4334\n"
    )
    assert masked_lines(text, is_shown_key) == [
        "\ufeffsql-password=********\n",
        "    ********\n",
        "  ********\r\n",
        "sql-url=jdbc:postgresql://********@h/db\n",
        "#sql-passwd=********\n",
        "# prose with jdbc:oracle:thin:scott/********@db:1521:orcl\n",
        "memcached : ********\n",
        "port=4334\n",
    ]


def test_rendered_diff_masks_by_allowlist_in_text_and_json(tmp_path: Path) -> None:
    path = tmp_path / "t.properties"
    before = "x-password=pw1\\\n  pw2\nsql-url=jdbc:x://u:pw3@h\nodd-thing=pw4\naws-peer-role=\n"
    path.write_text(before, encoding="latin-1")
    change = write_if_changed(path, before.replace("role=\n", "role=r\n"), dry_run=True)
    result = Result("ensure-transactor", dry_run=True, files=[change])
    text, doc = render.to_text(result), json.loads(render.to_json(result))
    for shown in (text, doc["files"][0]["diff"]):
        for secret in ("pw1", "pw2", "pw3", "pw4"):
            assert secret not in shown
        assert "+aws-peer-role=r" in shown and "odd-thing=********" in shown
    assert "pw2" in change.diff  # the raw diff is kept for the program, never rendered


def test_template_diff_is_not_masked(tmp_path: Path) -> None:
    path = tmp_path / "cf.json"
    path.write_text('{\n  "InstanceType": "m5.large"\n}\n')
    change = write_if_changed(path, '{\n  "InstanceType": "m5.xlarge"\n}\n', dry_run=True)
    text = render.to_text(Result("create-cf-template", dry_run=True, files=[change]))
    assert '-  "InstanceType": "m5.large"' in text and '+  "InstanceType": "m5.xlarge"' in text


@pytest.mark.parametrize("secret", ['pa"ss', "pässwörd", "back\\slash"])
def test_json_output_masks_secrets_that_json_escapes(secret: str) -> None:
    result = Result("ensure-transactor", warnings=[f"value {secret} seen"])
    result.extra["secrets"] = [secret]
    result.extra["note"] = f"x {secret} y"
    out = render.to_json(result)
    assert json.loads(out)["note"] == f"x {MASK} y"
    assert json.dumps(secret)[1:-1] not in out and secret not in out


def test_error_messages_quote_values_only_under_the_allowlist(tmp_path: Path) -> None:
    assert _shown_value("port", "notaport", ()) == "notaport"
    assert _shown_value("sql-url", "oracle:thin:scott/tiger@db", ()) is None
    assert _shown_value("sql-passwd", "x", ()) is None
    assert _shown_value("odd-key", "x", ()) is None
    props = PropertiesText(
        "protocol=sql\nhost=h\nport=4334\naws-region=us-east-1\nsql-url=oracle:thin:scott/TIGER-77@db:1521:o\n",
        str(tmp_path / "t.properties"),
    )
    _, problems = validate(props, "transactor")
    assert [p.key for p in problems] == ["sql-url"]
    assert "TIGER-77" not in problems[0].message


def test_error_lines_mask_credentials_whatever_composed_them() -> None:
    from datomic_aws.errors import DatomicAwsError, InvalidInput, Problem

    plain = DatomicAwsError("cannot fetch https://u:TOKEN-88@example.com/x.zip", "cf.properties")
    assert "TOKEN-88" not in "\n".join(plain.lines())
    invalid = InvalidInput([Problem("f", 3, "k", "k got 'jdbc:oracle:thin:s/TIGER-89@db'")])
    assert "TIGER-89" not in "\n".join(invalid.lines())


def test_a_key_is_named_only_when_written_as_a_plain_setting() -> None:
    # A bare word (the rest of a password whose line lost its backslash) and a key with escapes
    # (`db\:secret=`) may be secrets themselves: masked whole, the key included.
    text = "sql-password=head\n    tail-secret\ndb\\:key-secret=x\nmemcached-auth=v\n"
    lines = masked_lines(text, is_shown_key)
    assert lines == [
        "sql-password=" + MASK + "\n",
        "    " + MASK + "\n",
        MASK + "\n",
        "memcached-auth=" + MASK + "\n",
    ]
    entries = PropertiesText(text).entries()
    assert not entries["tail-secret"].nameable and not entries["db:key-secret"].nameable
    assert entries["memcached-auth"].nameable


def test_a_credential_continued_over_lines_masks_the_shown_value_whole() -> None:
    text = "sql-url=jdbc:postgresql://datomic:\\\n    split-secret@db:5432/datomic\nport=4334\n"
    assert masked_lines(text, is_shown_key) == [
        "sql-url=" + MASK + "\n",
        "    " + MASK + "\n",
        "port=4334\n",
    ]


def test_a_credential_in_a_published_cf_value_is_refused_without_quoting_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cf.properties"
    path.write_text(
        "aws-region=us-east-1\naws-instance-type=m7i.large\n"
        "java-opts=-Djavax.net.ssl.trustStorePassword=jvm-secret -XX:+UseG1GC\n",
        encoding="latin-1",
    )
    with pytest.raises(InvalidInput) as err:
        spec_from(PropertiesText.load(path))
    text = "\n".join(err.value.lines())
    assert f"{path}:3 java-opts" in text and "credential" in text
    assert "jvm-secret" not in text
