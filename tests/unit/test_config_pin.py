"""config/transactor.py `stale_pin`: the keyed digest ensure-transactor records beside the pinned
parameter version (`datomic-aws-config-digest`) makes create-cf-template refuse a configuration
edited since, with exit 2 and the command to run; a file without it (the previous release) is not
refused. The recorded digest is outside the stored configuration (it would otherwise cover
itself), and the schema accepts only a digest's shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from datomic_aws.app.template import create_cf_template
from datomic_aws.config.cf import load_cf
from datomic_aws.config.transactor import (
    CONFIG_DIGEST_KEY,
    config_digest,
    effective_config,
    load_transactor,
    load_transactor_text,
    stale_pin,
)
from datomic_aws.errors import ExitCode, InvalidInput
from datomic_aws.template import build_template
from tests.unit.test_template import CF, TRANSACTOR


def _recorded(text: str) -> str:
    """`text` with the digest ensure-transactor would record for it."""
    _, spec = load_transactor_text(text, "transactor.properties")
    return text + f"{CONFIG_DIGEST_KEY}={config_digest(spec.values)}\n"


def _write(tmp_path: Path, transactor: str) -> tuple[Path, Path, Path]:
    (tmp_path / "transactor.properties").write_text(transactor)
    (tmp_path / "cf.properties").write_text(CF)
    return tmp_path / "transactor.properties", tmp_path / "cf.properties", tmp_path / "cf.json"


def test_a_configuration_as_recorded_is_not_refused() -> None:
    _, spec = load_transactor_text(_recorded(TRANSACTOR), "transactor.properties")
    assert stale_pin(spec) == []


def test_a_configuration_edited_since_is_refused_with_the_command_to_run(tmp_path: Path) -> None:
    edited = _recorded(TRANSACTOR).replace("memory-index-max=512m", "memory-index-max=600m")
    t, c, out = _write(tmp_path, edited)
    (problem,) = stale_pin(load_transactor(t)[1])
    assert problem.key == "datomic-aws-config-version"
    assert "changed since ensure-transactor stored it as version 3" in problem.message
    assert f"run datomic-aws ensure-transactor {t} first" in (problem.hint or "")
    with pytest.raises(InvalidInput) as caught:
        create_cf_template(t, c, out, dry_run=False)
    assert caught.value.exit_code is ExitCode.USAGE
    assert not out.exists()
    with pytest.raises(InvalidInput):
        build_template(load_transactor(t)[1], load_cf(c)[1])


def test_a_file_without_a_recorded_digest_cannot_be_checked_and_is_not_refused(
    tmp_path: Path,
) -> None:
    """The previous release wrote the version only: refusing it would stop every existing folder
    at its first create-cf-template after the upgrade; the next ensure-transactor records it."""
    edited = TRANSACTOR.replace("memory-index-max=512m", "memory-index-max=600m")
    t, c, out = _write(tmp_path, edited)
    assert stale_pin(load_transactor(t)[1]) == []
    assert create_cf_template(t, c, out, dry_run=False).files[0].written


def test_the_recorded_digest_is_not_part_of_the_stored_configuration() -> None:
    _, before = load_transactor_text(TRANSACTOR, "transactor.properties")
    _, after = load_transactor_text(_recorded(TRANSACTOR), "transactor.properties")
    assert effective_config(after.values) == effective_config(before.values)
    assert CONFIG_DIGEST_KEY not in effective_config(after.values)
    assert config_digest(after.values) == config_digest(before.values)


def test_the_schema_accepts_only_a_digest() -> None:
    with pytest.raises(InvalidInput, match=CONFIG_DIGEST_KEY):
        load_transactor_text(TRANSACTOR + f"{CONFIG_DIGEST_KEY}=not-a-digest\n", "t.properties")
