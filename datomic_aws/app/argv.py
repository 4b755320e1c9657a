"""Global options anywhere on the command line, as aws-cli takes them.

Owns moving the group's options (`--output json`, `--debug`, ...) from wherever they stand on the
line to before the command, where click reads them, and refusing a conflicting repeat
(`--output json ... --output text`). A plain rewrite of the argument list: it never imports click
and never prints; cli.py says which options are global and which command options take a value.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from datomic_aws.errors import UsageError


def hoist_global_options(
    args: Sequence[str],
    global_options: Mapping[str, bool],
    value_options: Collection[str] = (),
) -> list[str]:
    """`args` with every global option moved to the front, each once, in the order first given.

    `global_options` maps each global option to whether it takes a value; `value_options` are the
    commands' own options that take one (their value is never read as a global option). A repeat
    with the same value is harmless; a different value is a usage error (exit 2). Everything after
    `--` is left as it is.
    """
    given: dict[str, list[str | None]] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            rest.extend(args[i:])
            break
        name, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        if name in global_options and (global_options[name] or not eq):
            value: str | None = None
            if global_options[name]:
                if not eq and i + 1 >= len(args):
                    raise UsageError(f"option {name} needs a value", "", f"e.g. {name} VALUE")
                value = inline if eq else args[i + 1]
                i += 0 if eq else 1
            given.setdefault(name, []).append(value)
        else:
            rest.append(token)
            if name in value_options and not eq and i + 1 < len(args):
                rest.append(args[i + 1])
                i += 1
        i += 1
    return [*_front(given), *rest]


def _front(given: Mapping[str, list[str | None]]) -> list[str]:
    front: list[str] = []
    for name, values in given.items():
        distinct = list(dict.fromkeys(values))
        if len(distinct) > 1:
            shown = " and ".join(repr(v) for v in distinct)
            raise UsageError(
                f"{name} is given twice with different values ({shown})",
                "",
                f"give {name} once, before or after the command",
            )
        front.extend([name] if distinct[0] is None else [name, str(distinct[0])])
    return front
