"""Command line: a click group of thin commands and the one error funnel.

Each command parses its arguments, builds the AwsContext, calls one library function and renders
its Result. This is the only module that imports click and the only one that prints. boto3 and the
library modules are imported inside the commands so that `datomic-aws --help` stays fast.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from datomic_aws import __version__
from datomic_aws.errors import DatomicAwsError, ExitCode, Interrupted, UsageError

if TYPE_CHECKING:
    from datomic_aws.aws import AwsContext
    from datomic_aws.changes import Result

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Options:
    profile: str | None
    endpoint_url: str | None
    output: str
    debug: bool
    command: str = ""

    def aws(
        self, *, dry_run: bool = False, allowed_writes: frozenset[str] = frozenset()
    ) -> AwsContext:
        from datomic_aws.aws import AwsContext

        return AwsContext(
            profile=self.profile,
            endpoint_url=self.endpoint_url,
            read_only=dry_run,
            allowed_writes=allowed_writes,
        )


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


def emit(opts: Options, result: Result, aws: AwsContext | None) -> None:
    from datomic_aws import render

    calls = aws.call_log.as_dict() if aws is not None else None
    if opts.output == "json":
        sys.stderr.write(render.warnings_text(result))
        sys.stdout.write(render.to_json(result, calls))
    else:
        sys.stderr.write(render.warnings_text(result))
        sys.stdout.write(render.to_text(result))
    sys.stdout.flush()


def finish(
    opts: Options, aws: AwsContext | None, result: Result, *, detailed_exitcode: bool
) -> int:
    emit(opts, result, aws)
    if detailed_exitcode and result.pending:
        return int(ExitCode.CHANGES_PENDING)
    return int(ExitCode.OK)


def change_options(*, adopt: bool = False) -> Callable[[F], F]:
    """--dry-run / --detailed-exitcode (and --adopt where names are derived)."""

    def decorate(fn: F) -> F:
        fn = click.option(
            "--detailed-exitcode",
            is_flag=True,
            help="With --dry-run: exit 3 when changes are pending, 0 when there are none.",
        )(fn)
        fn = click.option(
            "--dry-run",
            is_flag=True,
            help="Plan only: read AWS, print the changes and the diff of files; write nothing.",
        )(fn)
        if adopt:
            fn = click.option(
                "--adopt",
                is_flag=True,
                help="Take over resources that have the derived names but not our tags.",
            )(fn)
        return fn

    return decorate


def _check_detailed(dry_run: bool, detailed_exitcode: bool) -> None:
    if detailed_exitcode and not dry_run:
        raise UsageError("--detailed-exitcode needs --dry-run", "", "add --dry-run")


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Docs: README.md. Exit codes: 0 ok, 1 failure, 2 invalid input, 3 changes pending "
    "(--dry-run --detailed-exitcode), 130 interrupted.",
)
@click.option(
    "--profile", metavar="P", help="AWS profile (default: AWS_PROFILE or the default chain)."
)
@click.option(
    "--endpoint-url",
    metavar="URL",
    help="AWS endpoint for every service (moto, LocalStack); AWS_ENDPOINT_URL also works.",
)
@click.option(
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: exactly one JSON document on stdout.",
)
@click.option("--debug", is_flag=True, help="On errors, add the traceback and the AWS request id.")
@click.version_option(__version__, prog_name="datomic-aws")
@click.pass_context
def cli(
    ctx: click.Context, profile: str | None, endpoint_url: str | None, output: str, debug: bool
) -> None:
    """Provision and update the AWS side of a Datomic Pro transactor, idempotently.

    \b
    The loop, for one environment folder:
      datomic-aws ensure-transactor aws/prod/transactor.properties
      datomic-aws ensure-cf aws/prod/cf.properties
      git diff aws/prod && git commit -am "datomic: ensure"
    """
    ctx.obj = Options(profile, endpoint_url, output, debug, ctx.invoked_subcommand or "")


@cli.command("ensure-transactor")
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@click.argument("output_path", metavar="[OUTPUT]", required=False, type=click.Path(dir_okay=False))
@change_options(adopt=True)
@click.pass_obj
def ensure_transactor_cmd(
    opts: Options,
    input_path: str,
    output_path: str | None,
    dry_run: bool,
    detailed_exitcode: bool,
    adopt: bool,
) -> int:
    """Ensure the table, roles, log bucket and stored configuration of a transactor.

    Validates INPUT, converges AWS, and writes the generated names back into OUTPUT (default:
    INPUT, in place), touching only the lines whose values change.

    \b
    Example:
      datomic-aws ensure-transactor aws/prod/transactor.properties
      datomic-aws ensure-transactor --dry-run --detailed-exitcode aws/prod/transactor.properties
    """
    from datomic_aws.ensure import ensure_transactor

    _check_detailed(dry_run, detailed_exitcode)
    aws = opts.aws(dry_run=dry_run)
    result = ensure_transactor(aws, input_path, output_path, dry_run=dry_run, adopt=adopt)
    return finish(opts, aws, result, detailed_exitcode=detailed_exitcode)


@cli.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    help="Folder for the demo's files (default: a new temporary folder, kept).",
)
@click.pass_obj
def demo_cmd(opts: Options, directory: str | None) -> int:
    """Run the whole loop against an embedded AWS (moto) on 127.0.0.1: no account needed.

    Needs the sandbox extra: pip install 'datomic-aws[sandbox]'.

    \b
    Example:
      datomic-aws demo
      datomic-aws demo --dir /tmp/datomic-demo
    """
    from datomic_aws.sandbox import run_demo

    return run_demo(directory, out=click.echo, err=_echo_err, json_output=opts.output == "json")


def _request_id(exc: BaseException) -> str:
    return str(getattr(exc, "request_id", "") or "")


def _report(exc: DatomicAwsError, opts: Options | None) -> int:
    for line in exc.lines():
        _echo_err(line)
    if opts is not None and opts.debug:
        if _request_id(exc):
            _echo_err(f"AWS request id: {_request_id(exc)}")
        _echo_err("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    if opts is not None and opts.output == "json":
        error: dict[str, Any] = {"messages": exc.lines(), "exit_code": int(exc.exit_code)}
        if _request_id(exc):
            error["request_id"] = _request_id(exc)
        doc = {"command": opts.command, "error": error}
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    return int(exc.exit_code)


def _as_catalogue_error(exc: Exception) -> DatomicAwsError | None:
    """botocore's own exceptions, for the cases a module let through."""
    if "botocore" not in sys.modules:
        return None
    import botocore.exceptions

    from datomic_aws.aws import translate
    from datomic_aws.errors import CredentialsError

    if isinstance(exc, botocore.exceptions.ClientError):
        return translate(exc)
    if isinstance(
        exc, (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError)
    ):
        return CredentialsError(str(exc))
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return DatomicAwsError(
            f"cannot reach the AWS endpoint: {exc}",
            "",
            "check the network, --endpoint-url, AWS_ENDPOINT_URL",
        )
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return DatomicAwsError(f"AWS SDK error: {exc}", "", "rerun with --debug for details")
    return None


def main(argv: list[str] | None = None) -> None:
    """The one error funnel: every failure becomes one `Error:` line and a named exit code."""
    ctx: click.Context | None = None
    code: int
    try:
        ctx = cli.make_context("datomic-aws", list(sys.argv[1:] if argv is None else argv))
        with ctx:
            rv = cli.invoke(ctx)
        code = rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = int(ExitCode.USAGE) if isinstance(exc, click.UsageError) else exc.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort):
        code = _report(
            Interrupted("interrupted", "", "rerun the same command to converge"), _opts(ctx)
        )
    except DatomicAwsError as exc:
        code = _report(exc, _opts(ctx))
    except Exception as exc:
        known = _as_catalogue_error(exc)
        if known is None:
            _echo_err(f"Error: internal error: {type(exc).__name__}: {exc}")
            _echo_err("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            code = int(ExitCode.FAILURE)
        else:
            known.__traceback__ = exc.__traceback__
            code = _report(known, _opts(ctx))
    sys.exit(code)


def _opts(ctx: click.Context | None) -> Options | None:
    return ctx.obj if ctx is not None and isinstance(ctx.obj, Options) else None
