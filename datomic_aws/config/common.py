"""Schema-driven validation of flat properties into typed values, with every problem located.

The JSON Schemas in `datomic_aws/schemas/` are the single statement of what a file may contain.
Flat strings are converted to the types the schema declares before validation; blank values count as
absent (the tool fills them). Every problem names the file, the line and the key; a secret's value
never appears in a message. No AWS, no I/O beyond reading the packaged schemas.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, cast

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from datomic_aws.errors import InvalidInput, Problem
from datomic_aws.properties import PropertiesText

_SECRET_KEY = re.compile(r"password|secret|license-key|access-key|token", re.IGNORECASE)


# A value that carries a credential even under an ordinary key: `jdbc:...://user:pass@host`,
# `...?password=...`.
_CREDENTIAL_IN_VALUE = re.compile(r"://[^/@\s]*:[^/@\s]*@|password|secret|token", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def secret_values(values: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(sorted({v for k, v in values.items() if is_secret_key(k) and v}))


@cache
def load_schema(name: str) -> dict[str, Any]:
    text = resources.files("datomic_aws.schemas").joinpath(f"{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return schema


def _declared_type(schema: Mapping[str, Any], key: str) -> str | None:
    prop = schema.get("properties", {}).get(key)
    if isinstance(prop, dict):
        declared = prop.get("type")
        return declared if isinstance(declared, str) else None
    return None


def to_typed(values: Mapping[str, str], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Blank values dropped; integers and booleans converted where the text is unambiguous."""
    typed: dict[str, Any] = {}
    for key, raw in values.items():
        value = raw.strip()
        if value == "":
            continue
        declared = _declared_type(schema, key)
        if declared == "integer" and re.fullmatch(r"[+-]?[0-9]+", value):
            typed[key] = int(value)
        elif declared == "boolean" and value.lower() in ("true", "false"):
            typed[key] = value.lower() == "true"
        else:
            typed[key] = value
    return typed


def _fallback_message(err: ValidationError) -> str:
    v = err.validator
    if v == "type":
        return f"must be {'an' if str(err.validator_value)[0] in 'aeiou' else 'a'} {err.validator_value}"
    if v == "enum":
        return "must be one of " + ", ".join(str(x) for x in cast(list[Any], err.validator_value))
    if v == "const":
        return f"must be {err.validator_value}"
    if v in ("minimum", "exclusiveMinimum"):
        return f"must be at least {err.validator_value}"
    if v in ("maximum", "exclusiveMaximum"):
        return f"must be at most {err.validator_value}"
    if v == "minLength":
        return "must not be blank"
    if v == "maxLength":
        return f"must be at most {err.validator_value} characters"
    return "has an invalid value"


def _shown_value(key: str, raw: str | None, secrets: Iterable[str]) -> str | None:
    """The value as a problem may quote it, or None when it is (or holds) a secret."""
    if raw is None or is_secret_key(key) or _CREDENTIAL_IN_VALUE.search(raw):
        return None
    if any(secret in raw for secret in secrets):
        return None
    return raw


def _problems_of(
    err: ValidationError, typed: Mapping[str, Any], props: PropertiesText
) -> Iterable[Problem]:
    schema = err.schema if isinstance(err.schema, dict) else {}
    hint = str(schema.get("x-hint", ""))
    if err.validator == "required":
        for key in cast(list[str], err.validator_value):
            if key not in typed:
                message = schema.get("x-message") or "is required"
                yield Problem(props.path, props.line_of(key), key, f"{key} {message}", hint)
        return
    if not err.path:
        # err.message may quote the whole instance, secrets included: never shown.
        message = schema.get("x-message") or f"the file {_fallback_message(err)}"
        yield Problem(props.path, None, None, str(message), hint)
        return
    key = str(err.path[0])
    message = str(schema.get("x-message") or _fallback_message(err))
    shown = _shown_value(key, props.get(key), secret_values(props.values()))
    if shown is not None and err.validator not in ("not", "required"):
        message += f" (got {shown!r})"
    yield Problem(props.path, props.line_of(key), key, f"{key} {message}", hint)


def read_properties(path: str | Path) -> PropertiesText:
    """The file, or InvalidInput (exit 2) naming it when it cannot be read."""
    try:
        return PropertiesText.load(path)
    except OSError as exc:
        raise InvalidInput(
            [Problem(str(path), None, None, f"cannot read the file: {exc.strerror}")]
        ) from exc


def validate(props: PropertiesText, schema_name: str) -> tuple[dict[str, Any], list[Problem]]:
    schema = load_schema(schema_name)
    typed = to_typed(props.values(), schema)
    validator = Draft202012Validator(schema)
    problems: list[Problem] = []
    for err in validator.iter_errors(typed):
        # An if/then failure is reported through its inner errors, which carry the key.
        leaves = [err] if not err.context else list(err.context)
        for leaf in leaves:
            for problem in _problems_of(leaf, typed, props):
                if problem not in problems:
                    problems.append(problem)
    problems.sort(key=lambda p: (p.line is None, p.line or 0, p.key or ""))
    return typed, problems
