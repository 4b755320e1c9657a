"""Shell completion for bash, zsh and fish: click's own scripts and protocol.

Owns the completion script of each shell (`datomic-aws completion SHELL`) and the answer to a
shell asking for completions: the script runs `_DATOMIC_AWS_COMPLETE=<shell>_complete datomic-aws`
with the words typed so far in the environment, and the answer lists the commands, options and
values that fit. It imports click's `shell_completion` (the one module besides cli.py that does:
the scripts and the protocol are click's, written once there) and never prints: cli.py writes
what it returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click

COMPLETE_VAR = "_DATOMIC_AWS_COMPLETE"
PROG = "datomic-aws"
SHELLS = ("bash", "zsh", "fish")


def script(command: click.Command, shell: str) -> str:
    """The script that makes `shell` complete datomic-aws (README: Shell completion)."""
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)
    if complete is None or shell not in SHELLS:
        raise ValueError(f"no completion for {shell}")
    return complete(command, {}, PROG, COMPLETE_VAR).source()


def answer(command: click.Command, instruction: str) -> str | None:
    """What click's protocol writes for `instruction` (`bash_complete`, `zsh_source`, ...); None
    for an instruction it does not know."""
    from click.shell_completion import get_completion_class

    shell, _, what = instruction.partition("_")
    complete = get_completion_class(shell)
    if complete is None or what not in ("source", "complete"):
        return None
    comp = complete(command, {}, PROG, COMPLETE_VAR)
    return comp.source() if what == "source" else comp.complete() + "\n"
