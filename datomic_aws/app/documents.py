"""The template document a stack command deploys, and reading it from a file (an edge).

Owns `Template`: the text as it is uploaded (its bytes are content-addressed), the document parsed
once, and what our Metadata declares (system, region, group size). It must not call AWS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datomic_aws.errors import InvalidInput, Problem


@dataclass(frozen=True)
class Template:
    path: str
    text: str
    system: str | None
    group_size: int | None
    # The cf file's aws-region the template was generated for (None: an older or foreign template).
    region: str | None = None
    # The text parsed once; every later reader uses this.
    doc: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def template_from_doc(doc: Mapping[str, Any], text: str, path: str) -> Template:
    """The Template of a document already in memory (`text` is its dump)."""
    meta = _mapping(_mapping(doc.get("Metadata")).get("DatomicAws"))
    size = _mapping(_mapping(doc.get("Parameters")).get("GroupSize")).get("Default")
    return Template(
        path=path,
        text=text,
        system=str(meta["System"]) if meta.get("System") else None,
        group_size=int(size) if size is not None and str(size).isdigit() else None,
        region=str(meta["Region"]) if meta.get("Region") else None,
        doc=doc,
    )


def template_from_text(text: str, path: str) -> Template:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidInput([Problem(path, None, None, f"not a JSON template: {exc}")]) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise InvalidInput(
            [Problem(path, None, None, "not a CloudFormation template (no Resources)")]
        )
    return template_from_doc(doc, text, path)


def read_template(path: str | Path) -> Template:
    """The template file: missing, not UTF-8 or not JSON is InvalidInput (exit 2), a file the
    environment refuses to read is FileAccessError (exit 1); one line either way."""
    from datomic_aws.checks import check_input

    check_input(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            [
                Problem(
                    str(path),
                    None,
                    None,
                    f"not a JSON template: byte {exc.start} is not UTF-8",
                    "give the cf.json that `datomic-aws create-cf-template` wrote",
                )
            ]
        ) from exc
    except OSError as exc:
        raise InvalidInput(
            [Problem(str(path), None, None, f"cannot read the template: {exc.strerror}")]
        ) from exc
    return template_from_text(text, str(path))
