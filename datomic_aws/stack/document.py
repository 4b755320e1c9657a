"""The template a stack operation deploys: its text (what is uploaded and content-addressed) and
its document, parsed once per operation and passed on.

It must not call AWS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from datomic_aws.errors import UsageError


@dataclass(frozen=True)
class StackTemplate:
    text: str
    doc: Mapping[str, Any]

    def desired_parameters(self, parameters: Mapping[str, str] | None) -> dict[str, str]:
        """Every plain parameter with its value: the template's defaults, then `parameters`."""
        declared: Mapping[str, Any] = self.doc.get("Parameters", {})
        # An SSM-typed default is reported as the path by AWS but as the resolved value by moto;
        # the path itself is part of the template, which is compared as a whole.
        out = {
            k: str(v["Default"])
            for k, v in declared.items()
            if "Default" in v
            and not str(v.get("Type", "")).startswith("AWS::SSM::Parameter::Value<")
        }
        out.update(parameters or {})
        return out

    def capabilities(self) -> list[str]:
        """CAPABILITY_IAM when the template holds an IAM resource (the S3 download grant):
        CloudFormation refuses such a change set without it (InsufficientCapabilitiesException);
        moto does not check capabilities (reference §7), tests assert the request instead."""
        resources: Mapping[str, Any] = self.doc.get("Resources", {})
        iam = any(str(r.get("Type", "")).startswith("AWS::IAM::") for r in resources.values())
        return ["CAPABILITY_IAM"] if iam else []


def as_template(template: str | StackTemplate) -> StackTemplate:
    """The template parsed (once); one that is not a JSON object with Resources is refused before
    any AWS call."""
    if isinstance(template, StackTemplate):
        return template
    try:
        doc = json.loads(template)
    except ValueError as exc:
        raise UsageError(
            f"the template is not valid JSON ({exc})", "", "regenerate it with create-cf-template"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise UsageError(
            "the template has no Resources object", "", "regenerate it with create-cf-template"
        )
    return StackTemplate(template, doc)
