"""The packaged JSON Schemas are valid Draft 2020-12 schemas.

The tool does not meta-validate them at run time (config/common.py `load_schema`): this test is
where a broken schema is caught, before it ships.
"""

from __future__ import annotations

from importlib import resources

import pytest
from jsonschema import Draft202012Validator

from datomic_aws.config.common import load_schema

PACKAGED = sorted(
    p.name.removesuffix(".schema.json")
    for p in resources.files("datomic_aws.schemas").iterdir()
    if p.name.endswith(".schema.json")
)


def test_every_packaged_schema_is_listed() -> None:
    assert PACKAGED == ["cf", "transactor"]


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_schema_is_valid_against_its_metaschema(name: str) -> None:
    Draft202012Validator.check_schema(load_schema(name))


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_schema_declares_draft_2020_12(name: str) -> None:
    assert load_schema(name).get("$schema") == "https://json-schema.org/draft/2020-12/schema"
