"""Text and JSON rendering of command results and errors.

Owns what the operator sees: one JSON document per command on stdout with `--output json`, or a
readable plan/report. Owns the last line of defence against leaking secrets: a properties file's
diff is shown through the allowlist of keys (`shown_diff`), and every rendered string passes
through `redact`, which masks secret values, credentials inside values (URL user-info, Oracle's
`user/pass@`, `password=` parameters) and the values of secret keys in file diffs.
Never decides anything and never calls AWS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from datomic_aws.changes import Action, FileChange, Result
from datomic_aws.properties import is_json, unified_diff
from datomic_aws.secrets import MASK, SECRET_WORDS, mask_credentials

_SYMBOL = {Action.CREATE: "+", Action.UPDATE: "~", Action.DELETE: "-", Action.NOOP: "="}
# A diff line of a properties file whose key names a secret: keep the key, mask the value.
_SECRET_LINE = re.compile(
    rf"^(?P<head>[ +\-][ \t\f]*[#!]?[ \t\f]*[^\s=:]*(?:{SECRET_WORDS})"
    r"[^\s=:]*[ \t\f]*[=:]?[ \t\f]*)(?P<value>\S.*)$",
    re.IGNORECASE | re.MULTILINE,
)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Every secret value, every credential inside a value, and the value of every diff line whose
    key names a secret, masked."""
    text = _SECRET_LINE.sub(lambda m: m.group("head") + MASK, text)
    text = mask_credentials(text)
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


def _redact_doc(value: Any, secrets: list[str]) -> Any:
    """Each string of a JSON document redacted before it is encoded (a secret holding a quote or a
    non-ASCII letter is escaped in the encoded text, where a search for it would miss it)."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {redact(str(k), secrets): _redact_doc(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_doc(v, secrets) for v in value]
    return value


def shown_diff(change: FileChange) -> str:
    """The diff as output shows it. A properties file's diff goes through the allowlist
    (`config.common.is_shown_key`): only the values of keys the tool knows and that name no secret
    are shown; the lines of any other value, a continued value's next lines included, are masked.
    The template (JSON, which never holds a secret) is shown as it is."""
    if change.before is None or change.content is None or is_json(change.content):
        return change.diff
    from datomic_aws.config.common import is_shown_key

    return unified_diff(change.before, change.content, change.path, shown=is_shown_key)


def _secrets(result: Result) -> list[str]:
    return [str(s) for s in result.extra.get("secrets", [])]


def to_json(result: Result, aws_calls: dict[str, Any] | None = None) -> str:
    doc: dict[str, Any] = {
        "command": result.command,
        "dry_run": result.dry_run,
        "changed": result.pending,
        "changes": [c.as_dict() for c in result.changes],
        "files": [{**f.as_dict(), "diff": shown_diff(f)} for f in result.files],
        "warnings": list(result.warnings),
    }
    doc.update({k: v for k, v in result.extra.items() if k != "secrets"})
    if aws_calls is not None:
        doc["aws_calls"] = aws_calls
    return json.dumps(_redact_doc(doc, _secrets(result)), indent=2, sort_keys=True) + "\n"


def summary(result: Result) -> str:
    counts = {a: sum(1 for c in result.changes if c.action is a) for a in Action}
    verb = "would be " if result.dry_run else ""
    parts = []
    for action, word in (
        (Action.CREATE, "created"),
        (Action.UPDATE, "updated"),
        (Action.DELETE, "deleted"),
    ):
        if counts[action]:
            parts.append(f"{counts[action]} {verb}{word}")
    parts.append(f"{counts[Action.NOOP]} unchanged")
    files = [f for f in result.files if f.changed]
    if files:
        parts.append(f"{len(files)} file(s) {'would be ' if result.dry_run else ''}rewritten")
    head = "No changes." if not result.pending else "Changes:"
    return f"{head} " + ", ".join(parts) + "."


def status_text(doc: dict[str, Any]) -> str:
    head = f"stack {doc['stack']} ({doc['region']})"
    if not doc.get("exists"):
        return f"{head}: does not exist\n"
    lines = [
        f"{head}: {doc['stack_status']}" + (f" - {doc['reason']}" if doc.get("reason") else "")
    ]
    if doc.get("last_event"):
        lines.append(f"  last event: {doc['last_event']}")
    lines.append(
        f"  termination protection: {'on' if doc.get('termination_protection') else 'off'}"
    )
    template = doc.get("template")
    if template:
        state = (
            "matches the deployed one"
            if template["matches_deployed"]
            else "DIFFERS from the deployed one"
        )
        lines.append(f"  template {template['path']}: {state}")
    lines.extend(_status_health_lines(doc))
    group = doc.get("group")
    if group:
        lines.append(
            f"  group {group['name']}: min {group['min']} / desired {group['desired']} / max "
            f"{group['max']}, {group['in_service']} in service, launch template version "
            f"{group['launch_template_version']}"
        )
        if group.get("suspended_processes"):
            lines.append(f"  suspended processes: {', '.join(group['suspended_processes'])}")
        for i in group["instances"]:
            current = {True: "current", False: "OUTDATED", None: "?"}[i["current"]]
            role = i.get("role") or "-"  # "-": the instance publishes no role (yet)
            lines.append(
                f"    {i['id']}  {i['type']:<12} {i['zone']:<12} {i['lifecycle_state']:<12} "
                f"{i['health']:<9} {role:<8} v{i['launch_template_version']}  {current}"
            )
    if doc.get("out_of_sync"):
        lines.append("  out of sync: " + "; ".join(doc["out_of_sync"]))
    return "\n".join(lines) + "\n"


def _pin_text(pin: dict[str, Any]) -> str:
    digest = (pin.get("digest") or "")[:12] or "(no digest)"
    version = "?" if pin.get("version") is None else pin["version"]
    return f"version {version}, hmac-sha256 {digest}"


def _status_health_lines(doc: dict[str, Any]) -> list[str]:
    """status: the configuration the instances run against SSM and the local file, and the
    heartbeat's age (issue 13)."""
    lines = []
    config = doc.get("configuration")
    if config:
        state = "in sync" if config["in_sync"] else "DRIFTED"
        lines.append(f"  configuration {config['parameter']} ({config['region']}): {state}")
        for version, pin in config["running"].items():
            lines.append(f"    instances on v{version}: {_pin_text(pin)}")
        ssm = config["ssm"]
        lines.append(f"    SSM: {_pin_text(ssm) if ssm else 'no such parameter'}")
        if config.get("local"):
            lines.append(f"    {config['local']['path']}: {_pin_text(config['local'])}")
    beat = doc.get("heartbeat")
    if beat:
        if beat["age_seconds"] is None:
            lines.append(f"  last heartbeat metric: unknown ({beat['note']})")
        else:
            dimension = beat["dimension"]
            lines.append(
                f"  last heartbeat metric: {beat['age_seconds']:.0f} s ago "
                f"({beat['resolution_seconds']} s resolution; {beat['metric']} "
                f"{dimension['name']}={dimension['value']} in {beat['region']})"
            )
    return lines


_DIFF_LINES = 60


def _diff_excerpt(diff: str) -> list[str]:
    """A new file is announced, not printed; a long diff is cut (JSON output has it whole)."""
    lines = diff.rstrip("\n").splitlines()
    if len(lines) > 2 and lines[2].startswith("@@ -0,0 "):
        return [f"(new file, {sum(1 for x in lines[3:] if x.startswith('+'))} lines)"]
    if len(lines) > _DIFF_LINES:
        cut = len(lines) - _DIFF_LINES
        return [*lines[:_DIFF_LINES], f"... ({cut} more lines; --output json has the whole diff)"]
    return lines


def output(
    result: Result, aws_calls: dict[str, Any] | None, output: str, *, color: bool = False
) -> str:
    """The command's stdout: one JSON document with `--output json`, else the readable report."""
    return (
        to_json(result, aws_calls) if output == "json" else to_text(result, aws_calls, color=color)
    )


def calls_line(calls: dict[str, Any]) -> str:
    """The AWS call counts the run made, as the JSON's `aws_calls` has them."""
    return f"AWS calls: {calls.get('total', 0)} ({calls.get('mutating', 0)} mutating)."


def to_text(result: Result, aws_calls: dict[str, Any] | None = None, *, color: bool = False) -> str:
    """The readable report; it ends with the summary and the AWS call counts. With `color` (a
    terminal), creations and added lines are green, deletions and removed lines red, updates
    yellow; the colour is added after the text is redacted."""
    if "status" in result.extra:
        calls = f"{calls_line(aws_calls)}\n" if aws_calls is not None else ""
        return status_text(result.extra["status"]) + calls
    lines = [(f"{result.command}{' (dry run: nothing written)' if result.dry_run else ''}", "")]
    for change in result.changes:
        symbol = _SYMBOL[change.action]
        head = f"  {symbol} {change.action.value:<6} {change.resource}"
        lines.append((head, _ACTION_COLOR[change.action]))
        if change.changed:
            lines.extend((f"      {d}", _diff_color(d)) for d in change.details)
    for f in result.files:
        if f.changed:
            state = "rewritten" if f.written else "would be rewritten"
            lines.append((f"  file {f.path}: {state}", _ACTION_COLOR[Action.UPDATE]))
            lines.extend(("    " + d, _diff_color(d)) for d in _diff_excerpt(shown_diff(f)))
        else:
            lines.append((f"  file {f.path}: unchanged", ""))
    if result.extra.get("kept"):
        lines.append((f"  kept: {result.extra['kept']}", ""))
    lines.append((summary(result), ""))
    if aws_calls is not None:
        lines.append((calls_line(aws_calls), ""))
    text = redact("\n".join(line for line, _ in lines) + "\n", _secrets(result))
    return _colored(text, [c for _, c in lines]) if color else text


_GREEN, _RED, _YELLOW, _CYAN, _BOLD, _RESET = (f"\x1b[{n}m" for n in (32, 31, 33, 36, 1, 0))
_ACTION_COLOR = {
    Action.CREATE: _GREEN,
    Action.UPDATE: _YELLOW,
    Action.DELETE: _RED,
    Action.NOOP: "",
}


def _diff_color(line: str) -> str:
    """A unified diff's line: headers bold, hunks cyan, added green, removed red."""
    if line.startswith(("--- ", "+++ ")):
        return _BOLD
    if line.startswith("@@"):
        return _CYAN
    return {"+": _GREEN, "-": _RED}.get(line[:1], "")


def _colored(text: str, colors: list[str]) -> str:
    """The redacted text with each line in its colour (plain when redaction changed the number of
    lines: a colour is never worth a wrong line)."""
    lines = text.rstrip("\n").split("\n")
    if len(lines) != len(colors):
        return text
    return "".join(
        f"{c}{line}{_RESET}\n" if c else f"{line}\n" for line, c in zip(lines, colors, strict=True)
    )


def warnings_text(result: Result) -> str:
    return redact("".join(f"Warning: {w}\n" for w in result.warnings), _secrets(result))
