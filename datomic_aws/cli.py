"""Command line: a click group of thin commands and the one error funnel.

Each command parses its arguments, builds the AwsContext through the one session factory
(app/session.py), calls one app-layer function (datomic_aws/app/) and renders its Result; the help
texts are in app/help.py. This is the only module that imports click and the only one that
prints. boto3 and the library modules are imported inside the commands so that `--help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from datomic_aws import __version__
from datomic_aws.app.help import HELP, LOOP_ORDER, OPTIONS
from datomic_aws.app.session import Options
from datomic_aws.errors import DatomicAwsError, ExitCode, Interrupted, UsageError
from datomic_aws.terminal import Terminal

if TYPE_CHECKING:
    from datomic_aws.aws import AwsContext
    from datomic_aws.changes import Result

F = TypeVar("F", bound=Callable[..., Any])


# The run's stderr lines (wait lines stamped with the elapsed time, the live line on a terminal)
# and whether stdout is coloured: started by the group from the global options.
_TERMINAL = Terminal(lambda text: click.echo(text, err=True, nl=False))
_echo_err, _on_wait, _close_progress = _TERMINAL.line, _TERMINAL.wait_line, _TERMINAL.close


def finish(opts: Options, result: Result, *, detailed_exitcode: bool = False) -> int:
    """Render the result (and the AWS calls of the run's contexts); the exit code."""
    from datomic_aws import render
    from datomic_aws.app.failures import calls_of

    _close_progress()
    sys.stderr.write(render.warnings_text(result))
    calls = calls_of(opts.contexts).as_dict() if opts.contexts else None
    sys.stdout.write(render.output(result, calls, opts.output, color=_TERMINAL.color))
    sys.stdout.flush()
    return int(ExitCode.CHANGES_PENDING if detailed_exitcode and result.pending else ExitCode.OK)


def change_options(*, adopt: bool = False) -> Callable[[F], F]:
    """--dry-run / --detailed-exitcode (and --adopt where names are derived)."""

    def decorate(fn: F) -> F:
        fn = _flag("--dry-run")(_flag("--detailed-exitcode")(fn))
        return _flag("--adopt")(fn) if adopt else fn

    return decorate


def _check_detailed(dry_run: bool, detailed_exitcode: bool) -> None:
    if detailed_exitcode and not dry_run:
        raise UsageError("--detailed-exitcode needs --dry-run", "", "add --dry-run")


_FILE = click.Path(dir_okay=False, readable=False)


def _flag(*decls: str, key: str = "") -> Callable[[F], F]:
    """A flag option whose help is OPTIONS[key or its long name]."""
    return click.option(*decls, is_flag=True, help=OPTIONS[key or decls[0]])


def _path(
    name: str, metavar: str, *, required: bool = True, folder: bool = False
) -> Callable[[F], F]:
    """A path argument checked by the commands themselves (one message for every problem)."""
    kind = click.Path(file_okay=not folder, dir_okay=folder, readable=False) if folder else _FILE
    return click.argument(name, metavar=metavar, required=required, type=kind)


def _seconds(name: str, default: float, *, minimum: float) -> Callable[[F], F]:
    return click.option(name, type=click.FloatRange(min=minimum), default=default,
                        show_default=True, metavar="SECONDS", help=OPTIONS[name])  # fmt: skip


class _Loop(click.Group):
    """Commands listed in the order of the operator's loop, each with its whole summary."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        order = {name: n for n, name in enumerate(LOOP_ORDER)}
        return sorted(self.commands, key=lambda name: (order.get(name, len(order)), name))

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.short_help = cmd.short_help or (cmd.help or "").strip().split("\n", 1)[0]
        super().add_command(cmd, name)


@click.group(
    cls=_Loop,
    help=HELP["datomic-aws"],
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=HELP["epilog"],
)
@click.option("--profile", metavar="P", help=OPTIONS["--profile"])
@click.option("--endpoint-url", metavar="URL", help=OPTIONS["--endpoint-url"])
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help=OPTIONS["--output"])  # fmt: skip
@_flag("--debug")
@_flag("--no-color")
@_seconds("--lock-timeout", 600.0, minimum=0)
@click.version_option(__version__, prog_name="datomic-aws")
@click.pass_context
def cli(ctx: click.Context, profile: str | None, endpoint_url: str | None, output: str, debug: bool,
        no_color: bool, lock_timeout: float) -> None:  # fmt: skip
    tty = (sys.stdout.isatty(), sys.stderr.isatty())
    _TERMINAL.start_for(output, no_color=no_color, tty=tty, env=os.environ)
    ctx.obj = Options(
        profile, endpoint_url, output, debug, lock_timeout, ctx.invoked_subcommand or "", _on_wait
    )
    from datomic_aws.checks import check_endpoint_url

    check_endpoint_url(endpoint_url)


def _input_output(fn: F) -> F:
    """INPUT [OUTPUT]: OUTPUT defaults to INPUT, rewritten in place (Datomic's convention)."""
    fn = _path("output_path", "[OUTPUT]", required=False)(fn)
    return _path("input_path", "INPUT")(fn)


def _ensure_command(name: str) -> None:
    """ensure-transactor and ensure-cf: the same arguments and steps, each its app function."""

    @cli.command(name, help=HELP[name])
    @_input_output
    @change_options(adopt=True)
    @click.pass_obj
    def command(opts: Options, input_path: str, output_path: str | None, dry_run: bool,
                detailed_exitcode: bool, adopt: bool) -> int:  # fmt: skip
        from datomic_aws.app.ensure_cf import ensure_cf
        from datomic_aws.app.ensure_transactor import ensure_transactor
        from datomic_aws.app.inputs import check_ensure_paths

        kind, ensure = (
            ("cf", ensure_cf) if name == "ensure-cf" else ("transactor", ensure_transactor)
        )
        _check_detailed(dry_run, detailed_exitcode)
        check_ensure_paths(kind, input_path, output_path, dry_run=dry_run)
        aws = opts.aws(dry_run=dry_run)
        with opts.locked(output_path or input_path, dry_run=dry_run):
            result = ensure(aws, input_path, output_path, dry_run=dry_run, adopt=adopt)
        return finish(opts, result, detailed_exitcode=detailed_exitcode)


_ensure_command("ensure-transactor")
_ensure_command("ensure-cf")


@cli.command("create-cf-template", help=HELP["create-cf-template"])
@_path("transactor_props", "TRANSACTOR_PROPS")
@_path("cf_props", "CF_PROPS")
@_path("output_json", "OUTPUT_JSON")
@change_options()
@click.pass_obj
def create_cf_template_cmd(opts: Options, transactor_props: str, cf_props: str, output_json: str,
                           dry_run: bool, detailed_exitcode: bool) -> int:  # fmt: skip
    from datomic_aws.app.template import check_template_paths, create_cf_template

    _check_detailed(dry_run, detailed_exitcode)
    inputs = check_template_paths(transactor_props, cf_props, output_json, dry_run=dry_run)
    with opts.locked(output_json, dry_run=dry_run):
        result = create_cf_template(
            transactor_props, cf_props, output_json, dry_run=dry_run, inputs=inputs
        )
    return finish(opts, result, detailed_exitcode=detailed_exitcode)


def wait_options(fn: F) -> F:
    fn = _seconds("--poll-interval", 5.0, minimum=0.1)(fn)
    return _seconds("--timeout", 3600.0, minimum=1)(fn)


def _waiting(timeout: float, poll_interval: float) -> Any:
    from datomic_aws.stack.events import Waiting

    return Waiting(timeout=timeout, poll_interval=poll_interval, on_event=_on_wait)


def _confirm(yes: bool, question: str) -> None:
    from datomic_aws.errors import Aborted

    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError("this step needs a confirmation", "", "rerun with --yes in scripts and CI")
    if not click.confirm(question, default=False, err=True):
        raise Aborted("not confirmed; nothing was changed")


_REGION = click.argument("region", metavar="REGION")
_STACK = click.argument("stack_name", metavar="STACK_NAME")
_TEMPLATE = _path("template_json", "TEMPLATE_JSON")


@cli.command("create-cf-stack", help=HELP["create-cf-stack"])
@_REGION
@_STACK
@_TEMPLATE
@_flag("--recreate-failed", key="--recreate-failed stack")
@change_options()
@wait_options
@click.pass_obj
def create_cf_stack_cmd(opts: Options, region: str, stack_name: str, template_json: str,
                        recreate_failed: bool, dry_run: bool, detailed_exitcode: bool,
                        timeout: float, poll_interval: float) -> int:  # fmt: skip
    from datomic_aws.app import stacks

    _check_detailed(dry_run, detailed_exitcode)
    template = stacks.stack_template(region, stack_name, template_json)
    result = stacks.create(
        opts.aws,
        region,
        stack_name,
        template,
        dry_run=dry_run,
        recreate_failed=recreate_failed,
        waiting=_waiting(timeout, poll_interval),
    )
    return finish(opts, result, detailed_exitcode=detailed_exitcode)


def _replacement_options(fn: F) -> F:
    fn = _flag("--no-replace")(fn)
    fn = click.option("--strategy", type=click.Choice(["surge", "terminate"]), default="surge",
                      show_default=True, help=OPTIONS["--strategy"])(fn)  # fmt: skip
    return _flag("--yes", "-y")(fn)


def _replacement(strategy: str, no_replace: bool, dry_run: bool, yes: bool, when: str) -> Any:
    """The replacement options; terminate (with downtime) is confirmed first."""
    from datomic_aws.deploy import Replacement

    if strategy == "terminate" and not no_replace and not dry_run:
        from datomic_aws.replace import TERMINATE_WARNING

        _echo_err(f"Warning: {TERMINATE_WARNING}")
        _confirm(yes, f"Replace the instances with downtime{when}?")
    return Replacement(
        strategy="terminate" if strategy == "terminate" else "surge", enabled=not no_replace
    )


_ADOPT_STACK = _flag("--adopt", key="--adopt stack")


@cli.command("update-stack", help=HELP["update-stack"])
@_REGION
@_STACK
@_TEMPLATE
@_replacement_options
@_ADOPT_STACK
@change_options()
@wait_options
@click.pass_obj
def update_stack_cmd(opts: Options, region: str, stack_name: str, template_json: str, yes: bool,
                     strategy: str, no_replace: bool, adopt: bool, dry_run: bool,
                     detailed_exitcode: bool, timeout: float,
                     poll_interval: float) -> int:  # fmt: skip
    from datomic_aws.app import stacks

    _check_detailed(dry_run, detailed_exitcode)
    template = stacks.stack_template(region, stack_name, template_json)
    replacement = _replacement(strategy, no_replace, dry_run, yes, "")
    result = stacks.update(
        opts.aws,
        region,
        stack_name,
        template,
        dry_run=dry_run,
        adopt=adopt,
        replacement=replacement,
        waiting=_waiting(timeout, poll_interval),
    )
    return finish(opts, result, detailed_exitcode=detailed_exitcode)


@cli.command("delete-cf-stack", help=HELP["delete-cf-stack"])
@_REGION
@_STACK
@_flag("--yes", "-y")
@change_options()
@wait_options
@click.pass_obj
def delete_cf_stack_cmd(opts: Options, region: str, stack_name: str, yes: bool, dry_run: bool,
                        detailed_exitcode: bool, timeout: float,
                        poll_interval: float) -> int:  # fmt: skip
    from datomic_aws.app import stacks
    from datomic_aws.checks import check_stack_arguments

    _check_detailed(dry_run, detailed_exitcode)
    check_stack_arguments(region, stack_name)
    if not dry_run:
        _confirm(yes, f"Delete stack {stack_name} in {region} and stop its transactors?")
    waiting = _waiting(timeout, poll_interval)
    result = stacks.delete(opts.aws, region, stack_name, dry_run=dry_run, waiting=waiting)
    return finish(opts, result, detailed_exitcode=detailed_exitcode)


@cli.command("status", help=HELP["status"])
@_REGION
@_STACK
@click.option("--template", "template_json", type=_FILE, help=OPTIONS["--template"])
@click.option("--transactor", type=_FILE, help=OPTIONS["--transactor"])
@click.pass_obj
def status_cmd(opts: Options, /, region: str, stack_name: str, **files: str | None) -> int:
    from datomic_aws.app import stacks

    result = stacks.status(opts.aws, region, stack_name, **files)
    finish(opts, result)
    return int(ExitCode.OK if result.extra["status"]["in_sync"] else ExitCode.CHANGES_PENDING)


@cli.command("apply", help=HELP["apply"])
@click.argument("directories", metavar="[DIR...]", nargs=-1,
                type=click.Path(file_okay=False, readable=False))  # fmt: skip
@click.option("--jobs", type=click.IntRange(min=1), metavar="N", help=OPTIONS["--jobs"])
@_flag("--recreate-failed")
@_replacement_options
@change_options(adopt=True)
@wait_options
@click.pass_obj
def apply_cmd(opts: Options, directories: tuple[str, ...], jobs: int | None, recreate_failed: bool,
              yes: bool, strategy: str, no_replace: bool, dry_run: bool, detailed_exitcode: bool,
              adopt: bool, timeout: float, poll_interval: float) -> int:  # fmt: skip
    from functools import partial

    from datomic_aws.app.apply import apply_dir, check_folder
    from datomic_aws.app.fleet import Settings, run_folders
    from datomic_aws.stack.transport import DRY_RUN_WRITES

    _check_detailed(dry_run, detailed_exitcode)
    waiting = _waiting(timeout, poll_interval)
    settings = Settings(dry_run, adopt, recreate_failed, detailed_exitcode, jobs, waiting)
    when = " if the launch template changes"
    confirm = partial(_replacement, strategy, no_replace, dry_run, yes, when)
    if len(directories) > 1:  # several environments side by side
        fleet = run_folders(opts, directories, settings, confirm)
        _close_progress()
        sys.stderr.write(fleet.stderr_text())
        sys.stdout.write(fleet.output(opts.output, color=_TERMINAL.color))
        return fleet.exit_code
    directory = directories[0] if directories else "."  # the current folder, as terraform's
    inputs = check_folder(directory, dry_run=dry_run)
    replacement = confirm()
    aws = opts.aws(dry_run=dry_run, allowed_writes=DRY_RUN_WRITES)
    with opts.locked(os.path.join(directory, "cf.json"), dry_run=dry_run):
        result = apply_dir(aws, directory, inputs=inputs, **settings.options(replacement))
    return finish(opts, result, detailed_exitcode=detailed_exitcode)


@cli.command("demo", help=HELP["demo"])
@click.option("--dir", "directory", type=click.Path(file_okay=False), help=OPTIONS["--dir"])
@click.pass_obj
def demo_cmd(opts: Options, directory: str | None) -> int:
    from datomic_aws.sandbox.demo import run_demo

    def out(text: str) -> None:
        _TERMINAL.line(text, write=lambda line: click.echo(line, nl=False))

    json_output = opts.output == "json"
    return run_demo(directory, out=out, err=_echo_err, wait=_on_wait, json_output=json_output)


@click.command("serve", help=HELP["sandbox serve"])
@click.option("--port", type=click.IntRange(0, 65535), default=0, help=OPTIONS["--port"])
@_flag("--transactors")
@click.pass_obj
def sandbox_serve_cmd(opts: Options, port: int, transactors: bool) -> int:
    from datomic_aws.sandbox.serve import run_server

    return run_server(port, transactors, click.echo, _echo_err, json_output=opts.output == "json")


cli.add_command(click.Group("sandbox", {"serve": sandbox_serve_cmd}, help=HELP["sandbox"]))


@cli.command("completion", help=HELP["completion"])
@click.argument("shell", metavar="SHELL", type=click.Choice(["bash", "zsh", "fish"]))
def completion_cmd(shell: str) -> int:
    from datomic_aws.app.completion import script

    click.echo(script(cli, shell), nl=False)
    return 0


def _arguments(argv: list[str] | None) -> list[str]:
    """The command line, global options moved before the command (app/argv.py); when a shell
    asks for completions (click's protocol, app/completion.py), answer and exit."""
    from datomic_aws.app.argv import hoist_global_options
    from datomic_aws.app.completion import COMPLETE_VAR, answer

    if os.environ.get(COMPLETE_VAR):
        text = answer(cli, os.environ[COMPLETE_VAR])
        click.echo(text or "", nl=False)
        sys.exit(0 if text is not None else 1)
    groups = [cli, *(c for c in cli.commands.values() if isinstance(c, click.Group))]
    commands = [c for g in groups for c in g.commands.values()]
    globals_ = {o: not p.is_flag for p in _options(cli) if not p.is_eager for o in p.opts}
    values = {o for c in commands for p in _options(c) if not p.is_flag for o in p.opts}
    return hoist_global_options(list(sys.argv[1:] if argv is None else argv), globals_, values)


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option)]


def _report(exc: DatomicAwsError, opts: Options | None) -> int:
    from datomic_aws.app.failures import error_document, request_id

    _close_progress()
    for line in exc.lines():
        _echo_err(line)
    if opts is not None and opts.debug:
        if request_id(exc):
            _echo_err(f"AWS request id: {request_id(exc)}")
        _echo_err("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    if opts is not None and opts.output == "json":
        doc = error_document(exc, opts.command, opts.contexts)
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    return int(exc.exit_code)


_STOPPING = b"datomic-aws: stopping; restoring what this run changed (SIGKILL stops at once)\n"


def _stopping() -> None:
    # os.write, not click.echo: the signal handler may run inside a write to the same stream.
    os.write(2, (b"\r\x1b[K" if _TERMINAL.live else b"") + _STOPPING)  # not into the live line


def main(argv: list[str] | None = None) -> None:
    """The one error funnel: every failure becomes one `Error:` line and a named exit code."""
    ctx: click.Context | None = None
    run: list[click.Context] = []
    code: int
    from datomic_aws.app.signals import interrupt_handlers

    def contexts() -> list[AwsContext]:
        opts = _opts(run[0]) if run else None
        return opts.contexts if opts is not None else []

    try:
        with interrupt_handlers(contexts, _stopping):
            ctx = cli.make_context("datomic-aws", _arguments(argv))
            run.append(ctx)
            with ctx:
                rv = cli.invoke(ctx)
        code = rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = int(ExitCode.USAGE) if isinstance(exc, click.UsageError) else exc.exit_code
        _usage_json(exc, _opts(ctx), code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        code = _report(
            Interrupted("interrupted", "", "rerun the same command to converge"), _opts(ctx)
        )
    except DatomicAwsError as exc:
        code = _report(exc, _opts(ctx))
    except Exception as exc:
        from datomic_aws.app.failures import as_catalogue_error, as_file_error

        known = as_catalogue_error(exc) or as_file_error(exc)
        if known is None:
            _echo_err(f"Error: internal error: {type(exc).__name__}: {exc}")
            _echo_err("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            code = int(ExitCode.FAILURE)
        else:
            known.__traceback__ = exc.__traceback__
            known.__cause__ = exc  # --debug shows botocore's own exception (an answer, say)
            code = _report(known, _opts(ctx))
    _close_progress()
    sys.exit(code)


def _usage_json(exc: click.ClickException, opts: Options | None, code: int) -> None:
    """--output json promises one document on stdout, click's own refusals (a wrong argument)
    included; click has already written its usage text to stderr."""
    if opts is not None and opts.output == "json":
        error = {"messages": [f"Error: {exc.format_message()}"], "exit_code": code}
        click.echo(json.dumps({"command": opts.command, "error": error}, indent=2, sort_keys=True))


def _opts(ctx: click.Context | None) -> Options | None:
    return ctx.obj if ctx is not None and isinstance(ctx.obj, Options) else None
