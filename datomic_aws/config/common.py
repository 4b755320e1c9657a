"""Schema-driven validation of flat properties into typed values, with every problem located.

The JSON Schemas in `datomic_aws/schemas/` are the single statement of what a file may contain.
Flat strings are converted to the types the schema declares before validation; blank values count as
absent (the tool fills them). Every problem names the file, the line and the key; a secret's value
never appears in a message. No AWS, no I/O beyond reading the packaged schemas.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import javaproperties

from datomic_aws.errors import FileAccessError, InvalidInput, Problem
from datomic_aws.properties import PropertiesText
from datomic_aws.secrets import has_credential
from datomic_aws.secrets import is_secret_key as is_secret_key  # re-exported: the config's API

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError


def secret_values(values: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(sorted({v for k, v in values.items() if is_secret_key(k) and v}))


@cache
def _known_keys() -> frozenset[str]:
    keys: set[str] = set()
    for name in ("transactor", "cf"):
        keys.update(load_schema(name).get("properties", {}))
    return frozenset(keys)


def is_shown_key(key: str) -> bool:
    """The allowlist of what output may quote: a value is shown only for a key the schemas know
    (the keys the tool writes among them) that names no secret. Any other value (an unknown key,
    `memcached-password`, `metrics-api-key`, a typo) is masked, since its meaning is unknown."""
    return key in _known_keys() and not is_secret_key(key)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A packaged schema. Not meta-validated at run time (that cost ~0.1 s on every start):
    tests/test_config_schemas.py checks every packaged schema against its metaschema."""
    text = resources.files("datomic_aws.schemas").joinpath(f"{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator(name: str) -> Draft202012Validator:
    """One validator per schema, built on first use and kept: a validator caches what it
    resolved (`load_schema` is cached too, so its schema is the one `validate` reads)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(name))


# Secrets the tool generates at random (config/transactor.py DIGEST_SECRET_KEY).
RANDOM_SECRETS = frozenset({"datomic-aws-digest-secret"})


def _valid_before(name: str, typed: Mapping[str, Any]) -> Path | None:
    """Where the memo of `typed` having passed schema `name` is (None: not kept for it).

    The check is a pure function of the schema, the typed values and jsonschema's code, and most
    runs read the files the previous run read: a memo (an empty file named by their digest, in
    the cache folder of datomic_aws/aws_models.py) spares the next run jsonschema (~70 ms to
    import). Never for values with an operator's secret in them: no digest of a password is
    written anywhere (the generated digest key is 256 random bits, which no digest reveals). Only
    a pass is kept, so every refusal is worked out and reported in full each time."""
    import importlib.util

    from datomic_aws.aws_models import cache_root

    if any(
        (is_secret_key(k) and k not in RANDOM_SECRETS) or (isinstance(v, str) and has_credential(v))
        for k, v in typed.items()
    ):
        return None
    spec = importlib.util.find_spec("jsonschema")
    if spec is None or spec.origin is None:
        return None
    code = Path(spec.origin).with_name("validators.py")
    try:
        stamp = f"{code}:{code.stat().st_mtime_ns}"
    except OSError:
        return None
    schema = json.dumps(load_schema(name), sort_keys=True)
    values = json.dumps(typed, sort_keys=True)
    digest = hashlib.sha256("\0".join((stamp, schema, values)).encode()).hexdigest()
    return cache_root() / "valid" / digest


def _schema_errors(name: str, typed: Mapping[str, Any]) -> list[ValidationError]:
    """jsonschema's errors for `typed` (none when it passed before: `_valid_before`)."""
    memo = _valid_before(name, typed)
    if memo is not None and memo.exists():
        return []
    errors = list(_validator(name).iter_errors(typed))
    if memo is not None and not errors:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            memo.touch()
        except OSError:
            pass  # a cache that cannot be written is no error
    return errors


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
    if raw is None or not is_shown_key(key) or has_credential(raw):
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
                yield Problem.at(props, key, f"{key} {message}", hint)
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
    yield Problem.at(props, key, f"{key} {message}", hint)


def read_properties(path: str | Path) -> PropertiesText:
    """The file; InvalidInput (exit 2) naming it when it is missing or holds a malformed escape,
    FileAccessError (exit 1) when the environment refuses to let us read it."""
    try:
        return PropertiesText.load(path)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        raise InvalidInput(
            [Problem(str(path), None, None, f"cannot read the file: {exc.strerror}")]
        ) from exc
    except OSError as exc:
        raise FileAccessError(
            f"cannot read the file: {exc.strerror}",
            str(path),
            "check the permissions of the file and its folder",
        ) from exc
    except javaproperties.InvalidUEscapeError:
        # The exception quotes the escape, which is part of a value that may be a password: only
        # the file, the line and the key are named, and it is not chained (--debug would show it).
        raise InvalidInput([_bad_escape_problem(str(path))]) from None


# A `\u` not followed by four hexadecimal digits, after an even number of backslashes (so `\\u`,
# an escaped backslash then `u`, is not one).
_BAD_U_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u(?![0-9A-Fa-f]{4})")
_KEY_OF_LINE = re.compile(r"^[ \t\f]*((?:\\.|[^ \t\f=:\\\r\n])*)")


def _bad_escape_problem(path: str) -> Problem:
    """Where the malformed `\\u` escape is: its line and the key of the logical line holding it."""
    with open(path, encoding="latin-1", newline="") as fh:
        # Java's line terminators only (str.splitlines also splits on \x85, \x0c...).
        lines = re.split(r"\r\n|\r|\n", fh.read())
    for number, line in enumerate(lines, start=1):
        if line.lstrip(" \t\f").startswith(("#", "!")) or not _BAD_U_ESCAPE.search(line):
            continue
        start = number
        # A continuation line belongs to the key of the first line of its logical line.
        while start > 1 and _continues(lines[start - 2]):
            start -= 1
        key = _KEY_OF_LINE.match(lines[start - 1])
        raw_key = key.group(1) if key else ""
        in_key = start == number and _BAD_U_ESCAPE.search(raw_key) is not None
        name = None if in_key or not raw_key else raw_key
        where = "in a key" if in_key else "in the value"
        return Problem(
            path,
            number,
            name,
            f"malformed \\u escape {where} (\\u must be followed by four hexadecimal digits)",
            "write the character itself, or \\u and its four-digit UTF-16 code; a backslash of "
            "its own is written \\\\",
        )
    return Problem(
        path, None, None, "malformed \\u escape (\\u must be followed by four hexadecimal digits)"
    )


def _continues(line: str) -> bool:
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def validate(props: PropertiesText, schema_name: str) -> tuple[dict[str, Any], list[Problem]]:
    schema = load_schema(schema_name)
    typed = to_typed(props.values(), schema)
    problems: list[Problem] = []
    for err in _schema_errors(schema_name, typed):
        # An if/then failure is reported through its inner errors, which carry the key.
        leaves = [err] if not err.context else list(err.context)
        for leaf in leaves:
            for problem in _problems_of(leaf, typed, props):
                if problem not in problems:
                    problems.append(problem)
    problems.extend(_region_problems(props, schema, typed, problems))
    problems.sort(key=lambda p: (p.line is None, p.line or 0, p.key or ""))
    return typed, problems


def published_credential_problems(
    props: PropertiesText, schema_name: str, found: Iterable[Problem]
) -> list[Problem]:
    """A credential (URL user-info, Oracle's `user/pass@`, a `password=` parameter or JVM property)
    in a value that is published: every value of the cf file that its schema knows reaches the
    template, the stack's parameters or the user data, which whoever can read the stack reads, so
    it must hold no secret (design §3, §4: no secret in the template or the user data). Refused
    naming the key, never quoting the value; a key refused by a rule of its own is not named
    twice."""
    refused = {p.key for p in found}
    out = []
    for key in load_schema(schema_name).get("properties", {}):
        raw = props.get(key)
        if key not in refused and raw and has_credential(raw):
            out.append(
                Problem(
                    props.path,
                    props.line_of(key),
                    key,
                    f"{key} holds a credential (a user-info, password or token); the values of "
                    "this file are published in the template, the stack's parameters and the "
                    "user data",
                    "keep secrets out of this file: the transactor's belong in "
                    "transactor.properties, which is stored encrypted in SSM",
                )
            )
    return out


_REGION_REF = "#/$defs/region"


def _region_problems(
    props: PropertiesText, schema: Mapping[str, Any], typed: Mapping[str, Any], found: list[Problem]
) -> list[Problem]:
    """A region-shaped value that is no region AWS has (`us-east-7`) is refused here, before any
    call: sent to AWS it fails only after many retries, or creates names for a region that is not."""
    from datomic_aws.checks import is_known_region, unknown_region_hint

    refused = {p.key for p in found}
    out = []
    for key, prop in schema.get("properties", {}).items():
        value = typed.get(key)
        if not isinstance(prop, dict) or prop.get("$ref") != _REGION_REF or key in refused:
            continue
        if isinstance(value, str) and not is_known_region(value):
            out.append(
                Problem(
                    props.path,
                    props.line_of(key),
                    key,
                    f"{key} {value!r} is not an AWS region",
                    unknown_region_hint(),
                )
            )
    return out
