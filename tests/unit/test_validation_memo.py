"""The memo of a properties file that passed its schema (config/common.py `_valid_before`): a pass
is remembered, a refusal never is, and no digest of an operator's secret is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from datomic_aws.config import common
from datomic_aws.config.transactor import DIGEST_SECRET_KEY, load_transactor_text
from datomic_aws.errors import InvalidInput
from tests.conftest import SAMPLES

DIGEST = "ab" * 32


def _memos(root: Path) -> list[Path]:
    folder = root / "valid"
    return sorted(folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("DATOMIC_AWS_CACHE_DIR", str(root))
    return root


def _sample(extra: str = "") -> str:
    return (SAMPLES / "transactor.properties").read_text(encoding="latin-1") + extra


def test_a_pass_is_remembered_and_gives_the_same_result(cache: Path) -> None:
    text = _sample(f"{DIGEST_SECRET_KEY}={DIGEST}\n")
    first = load_transactor_text(text, "transactor.properties")
    assert len(_memos(cache)) == 1
    again = load_transactor_text(text, "transactor.properties")
    assert again[1] == first[1]
    assert len(_memos(cache)) == 1
    # The generated key is the only secret a memo may cover.
    assert {DIGEST_SECRET_KEY} == common.RANDOM_SECRETS


def test_a_refusal_is_never_remembered_and_always_reported(cache: Path) -> None:
    bad = _sample("aws-dynamodb-read-capacity=zero\n")
    for _ in range(2):
        with pytest.raises(InvalidInput) as refused:
            load_transactor_text(bad, "transactor.properties")
        assert any(p.key == "aws-dynamodb-read-capacity" for p in refused.value.problems)
    assert _memos(cache) == []


def test_a_memo_that_passed_does_not_cover_another_value(cache: Path) -> None:
    load_transactor_text(_sample(), "transactor.properties")
    assert len(_memos(cache)) == 1
    with pytest.raises(InvalidInput):
        load_transactor_text(_sample("port=http\n"), "transactor.properties")


def test_no_memo_for_a_file_with_an_operators_secret(cache: Path) -> None:
    load_transactor_text(_sample("license-key=SECRETLICENSE\n"), "transactor.properties")
    assert _memos(cache) == []
