"""Command line: a click group of thin commands and the one error funnel.

Each command parses its arguments, builds the AwsContext, calls one library function and renders
its Result. This is the only module that imports click and the only one that prints. boto3 and the
library modules are imported inside the commands so that `datomic-aws --help` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
    lock_timeout: float = 600.0
    command: str = ""
    # Every AwsContext of the run, so that an interrupt can cancel their worker threads' calls.
    contexts: list[AwsContext] = field(default_factory=list)

    def locked(
        self, *paths: str | None, dry_run: bool = False
    ) -> contextlib.AbstractContextManager[None]:
        """The folders of the files a command rewrites, locked against a concurrent run."""
        if dry_run:
            return contextlib.nullcontext()
        from datomic_aws.locking import folder_lock

        folders = [os.path.dirname(os.path.abspath(p)) for p in paths if p]
        return folder_lock(folders, timeout=self.lock_timeout, on_wait=_echo_err)

    def aws(
        self, *, dry_run: bool = False, allowed_writes: frozenset[str] = frozenset()
    ) -> AwsContext:
        from datomic_aws.aws import AwsContext

        aws = AwsContext(
            profile=self.profile,
            endpoint_url=self.endpoint_url,
            read_only=dry_run,
            allowed_writes=allowed_writes,
            command=self.command,
            lock_timeout=self.lock_timeout,
        )
        self.contexts.append(aws)
        return aws


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


def _check_paths(inputs: dict[str, str], output: str, *, dry_run: bool = False) -> None:
    """Before the folder lock and any AWS call: a wrong path, an unparsable or invalid properties
    file is refused (every problem of every file listed) and leaves no lock file. `inputs` maps
    each path to its kind, "transactor" or "cf"."""
    from datomic_aws.checks import check_output, check_properties_input
    from datomic_aws.config.cf import load_cf
    from datomic_aws.config.transactor import load_transactor
    from datomic_aws.errors import InvalidInput

    for path in inputs:
        check_properties_input(path)
    check_output(output, writable=not dry_run)
    problems = []
    for path, kind in inputs.items():
        try:
            load_transactor(path) if kind == "transactor" else load_cf(path)
        except InvalidInput as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidInput(problems)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Docs: README.md. Exit codes: 0 ok, 1 failure, 2 invalid input, 3 changes pending "
    "(--dry-run --detailed-exitcode; status: out of sync), 130 interrupted.",
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
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for another run working on the same folder or stack (0: refuse at "
    "once).",
)
@click.version_option(__version__, prog_name="datomic-aws")
@click.pass_context
def cli(
    ctx: click.Context,
    profile: str | None,
    endpoint_url: str | None,
    output: str,
    debug: bool,
    lock_timeout: float,
) -> None:
    """Provision and update the AWS side of a Datomic Pro transactor, idempotently.

    \b
    The loop, for one environment folder:
      datomic-aws ensure-transactor aws/prod/transactor.properties
      datomic-aws ensure-cf aws/prod/cf.properties
      git diff aws/prod && git commit -am "datomic: ensure"
    """
    ctx.obj = Options(
        profile, endpoint_url, output, debug, lock_timeout, ctx.invoked_subcommand or ""
    )
    _check_endpoint_url(endpoint_url)


def _check_endpoint_url(endpoint_url: str | None) -> None:
    """--endpoint-url (or AWS_ENDPOINT_URL, which botocore reads itself) is an http(s) URL with a
    host: botocore refuses anything else with a bare ValueError when the first client is built."""
    from urllib.parse import urlsplit

    name = "--endpoint-url" if endpoint_url else "AWS_ENDPOINT_URL"
    url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if not url:
        return
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # a port that is not a number raises ValueError
    except ValueError:
        valid = False
    if not valid:
        raise UsageError(
            f"{name} {url!r} is not an endpoint URL",
            "",
            "give http:// or https:// and a host, e.g. http://127.0.0.1:5000",
        )


def _input_output(fn: F) -> F:
    """INPUT [OUTPUT]: OUTPUT defaults to INPUT, rewritten in place (Datomic's convention)."""
    fn = click.argument(
        "output_path",
        metavar="[OUTPUT]",
        required=False,
        type=click.Path(dir_okay=False, readable=False),
    )(fn)
    return click.argument(
        "input_path", metavar="INPUT", type=click.Path(dir_okay=False, readable=False)
    )(fn)


@cli.command("ensure-transactor")
@_input_output
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
    _check_paths({input_path: "transactor"}, output_path or input_path, dry_run=dry_run)
    aws = opts.aws(dry_run=dry_run)
    with opts.locked(output_path or input_path, dry_run=dry_run):
        result = ensure_transactor(aws, input_path, output_path, dry_run=dry_run, adopt=adopt)
    return finish(opts, aws, result, detailed_exitcode=detailed_exitcode)


@cli.command("ensure-cf")
@_input_output
@change_options(adopt=True)
@click.pass_obj
def ensure_cf_cmd(
    opts: Options,
    input_path: str,
    output_path: str | None,
    dry_run: bool,
    detailed_exitcode: bool,
    adopt: bool,
) -> int:
    """Ensure a transactor's network: VPC, subnets, security group, JVM sizing.

    Validates INPUT (instance type offered in the region, Xmx fits in RAM, subnets in the VPC),
    converges the security group's TCP 4334 rules, and writes the VPC, subnets, group id, java-xmx,
    datomic-version and stack name back into OUTPUT (default: INPUT).

    \b
    Example:
      datomic-aws ensure-cf aws/prod/cf.properties
      datomic-aws ensure-cf --dry-run aws/prod/cf.properties
    """
    from datomic_aws.ensure import ensure_cf

    _check_detailed(dry_run, detailed_exitcode)
    _check_paths({input_path: "cf"}, output_path or input_path, dry_run=dry_run)
    aws = opts.aws(dry_run=dry_run)
    with opts.locked(output_path or input_path, dry_run=dry_run):
        result = ensure_cf(aws, input_path, output_path, dry_run=dry_run, adopt=adopt)
    return finish(opts, aws, result, detailed_exitcode=detailed_exitcode)


@cli.command("create-cf-template")
@click.argument(
    "transactor_props", metavar="TRANSACTOR_PROPS", type=click.Path(dir_okay=False, readable=False)
)
@click.argument("cf_props", metavar="CF_PROPS", type=click.Path(dir_okay=False, readable=False))
@click.argument(
    "output_json", metavar="OUTPUT_JSON", type=click.Path(dir_okay=False, readable=False)
)
@change_options()
@click.pass_obj
def create_cf_template_cmd(
    opts: Options,
    transactor_props: str,
    cf_props: str,
    output_json: str,
    dry_run: bool,
    detailed_exitcode: bool,
) -> int:
    """Write the CloudFormation template: pure, no AWS call, deterministic.

    Reads TRANSACTOR_PROPS and CF_PROPS and writes OUTPUT_JSON (only when its bytes change). The
    template holds no transactor configuration and no secret: instances read the configuration
    from SSM at boot; its SHA-256 is embedded so that a configuration change rolls the instances.

    \b
    Example:
      datomic-aws create-cf-template aws/prod/transactor.properties aws/prod/cf.properties aws/prod/cf.json
    """
    from datomic_aws.template import create_cf_template

    _check_detailed(dry_run, detailed_exitcode)
    from datomic_aws.checks import check_output_distinct

    check_output_distinct(output_json, [transactor_props, cf_props])
    _check_paths({transactor_props: "transactor", cf_props: "cf"}, output_json, dry_run=dry_run)
    with opts.locked(output_json, dry_run=dry_run):
        result = create_cf_template(transactor_props, cf_props, output_json, dry_run=dry_run)
    return finish(opts, None, result, detailed_exitcode=detailed_exitcode)


def wait_options(fn: F) -> F:
    fn = click.option(
        "--poll-interval",
        type=click.FloatRange(min=0.1),
        default=5.0,
        show_default=True,
        metavar="SECONDS",
        help="How often to poll AWS while waiting.",
    )(fn)
    fn = click.option(
        "--timeout",
        type=click.FloatRange(min=1),
        default=3600.0,
        show_default=True,
        metavar="SECONDS",
        help="Give up waiting after this long (AWS carries on; `status` shows where it is).",
    )(fn)
    return fn


def _waiting(timeout: float, poll_interval: float) -> Any:
    from datomic_aws.stack.events import Waiting

    return Waiting(timeout=timeout, poll_interval=poll_interval, on_event=_echo_err)


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
_TEMPLATE = click.argument(
    "template_json", metavar="TEMPLATE_JSON", type=click.Path(dir_okay=False, readable=False)
)


def _stack_template(
    region: str, stack_name: str, template_json: str, *, deploys: bool = True
) -> Any:
    """REGION, STACK_NAME and TEMPLATE_JSON checked before any call: a known region, a valid stack
    name, a readable JSON template generated for that region (and, for the commands that deploy
    it, by datomic-aws)."""
    from datomic_aws.checks import (
        check_stack_arguments,
        check_template_region,
        check_template_system,
    )
    from datomic_aws.deploy import read_template

    check_stack_arguments(region, stack_name)
    template = read_template(template_json)
    if deploys:
        check_template_system(template.system, template.path)
    check_template_region(region, template.region, template.path)
    return template


def _stack_aws(opts: Options, dry_run: bool, template_text: str = "") -> AwsContext:
    from datomic_aws.stack.transport import dry_run_writes

    return opts.aws(
        dry_run=dry_run, allowed_writes=dry_run_writes(template_text) if dry_run else frozenset()
    )


@cli.command("create-cf-stack")
@_REGION
@_STACK
@_TEMPLATE
@click.option(
    "--recreate-failed",
    is_flag=True,
    help="Delete and create again a stack left in ROLLBACK_COMPLETE (only one carrying our tags).",
)
@change_options()
@wait_options
@click.pass_obj
def create_cf_stack_cmd(
    opts: Options,
    region: str,
    stack_name: str,
    template_json: str,
    recreate_failed: bool,
    dry_run: bool,
    detailed_exitcode: bool,
    timeout: float,
    poll_interval: float,
) -> int:
    """Create the stack, with termination protection, and wait for it.

    Creates stack STACK_NAME in REGION from TEMPLATE_JSON. The template goes through the tool's templates bucket (TemplateURL) and a change set. An
    existing stack with the same template is left alone; a different template is refused (use
    update-stack).

    \b
    Example:
      datomic-aws create-cf-stack us-east-1 datomic-prod aws/prod/cf.json
    """
    from datomic_aws.deploy import create_cf_stack

    _check_detailed(dry_run, detailed_exitcode)
    template = _stack_template(region, stack_name, template_json)
    aws = _stack_aws(opts, dry_run, template.text)
    result = create_cf_stack(
        aws,
        region,
        stack_name,
        template,
        dry_run=dry_run,
        recreate_failed=recreate_failed,
        waiting=_waiting(timeout, poll_interval),
    )
    return finish(opts, aws, result, detailed_exitcode=detailed_exitcode)


def _replacement_options(fn: F) -> F:
    fn = click.option(
        "--no-replace",
        is_flag=True,
        help="Update the stack only; leave the running instances as they are.",
    )(fn)
    fn = click.option(
        "--strategy",
        type=click.Choice(["surge", "terminate"]),
        default="surge",
        show_default=True,
        help="surge: start each replacement before stopping an old instance (no gap). "
        "terminate: Datomic's old way, with downtime.",
    )(fn)
    fn = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(fn)
    return fn


_ADOPT_STACK = click.option(
    "--adopt",
    is_flag=True,
    help="Take over a stack without our tags after showing its change set (and migrate a stack "
    "made by Datomic's bin/datomic). Never one tagged for another system.",
)


@cli.command("update-stack")
@_REGION
@_STACK
@_TEMPLATE
@_replacement_options
@_ADOPT_STACK
@change_options()
@wait_options
@click.pass_obj
def update_stack_cmd(
    opts: Options,
    region: str,
    stack_name: str,
    template_json: str,
    yes: bool,
    strategy: str,
    no_replace: bool,
    adopt: bool,
    dry_run: bool,
    detailed_exitcode: bool,
    timeout: float,
    poll_interval: float,
) -> int:
    """Update the stack, then replace the instances on an old launch template.

    Updates stack STACK_NAME in REGION to TEMPLATE_JSON through a change set, then replaces every
    instance not on the launch template version the stack declares. The default surge strategy raises the group by one, waits until the new transactor is in
    service (listening on 4334), then stops one old instance; the number of in-service transactors
    never drops below the group size. A rerun finishes an interrupted replacement. --dry-run shows
    the change set (created, described and deleted) and the instances that would be replaced.
    A stack without our tags is refused unless --adopt; one tagged for another system always is.
    A stack made by Datomic's bin/datomic is migrated under --adopt: a new group is in service
    before the old LaunchGroup is removed.

    \b
    Example:
      datomic-aws update-stack us-east-1 datomic-prod aws/prod/cf.json
      datomic-aws update-stack --dry-run us-east-1 datomic-prod aws/prod/cf.json
    """
    from datomic_aws.deploy import Replacement, update_cf_stack

    _check_detailed(dry_run, detailed_exitcode)
    template = _stack_template(region, stack_name, template_json)
    replacement = Replacement(
        strategy="terminate" if strategy == "terminate" else "surge", enabled=not no_replace
    )
    if strategy == "terminate" and not no_replace and not dry_run:
        from datomic_aws.replace import TERMINATE_WARNING

        _echo_err(f"Warning: {TERMINATE_WARNING}")
        _confirm(yes, "Replace the instances with downtime?")
    aws = _stack_aws(opts, dry_run, template.text)
    result = update_cf_stack(
        aws,
        region,
        stack_name,
        template,
        dry_run=dry_run,
        adopt=adopt,
        replacement=replacement,
        waiting=_waiting(timeout, poll_interval),
    )
    return finish(opts, aws, result, detailed_exitcode=detailed_exitcode)


@cli.command("delete-cf-stack")
@_REGION
@_STACK
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@change_options()
@wait_options
@click.pass_obj
def delete_cf_stack_cmd(
    opts: Options,
    region: str,
    stack_name: str,
    yes: bool,
    dry_run: bool,
    detailed_exitcode: bool,
    timeout: float,
    poll_interval: float,
) -> int:
    """Delete the stack (lifting termination protection) and wait until it is gone.

    Deletes stack STACK_NAME in REGION, which stops the transactors. Never touches the DynamoDB table, the roles, the buckets or the SSM
    configuration parameter: they live outside the stack. Only a stack datomic-aws manages is
    deleted: one without our tags, or tagged for another system, is refused.

    \b
    Example:
      datomic-aws delete-cf-stack us-east-1 datomic-prod --yes
    """
    from datomic_aws.checks import check_stack_arguments
    from datomic_aws.deploy import delete_cf_stack

    _check_detailed(dry_run, detailed_exitcode)
    check_stack_arguments(region, stack_name)
    if not dry_run:
        _confirm(yes, f"Delete stack {stack_name} in {region} and stop its transactors?")
    aws = opts.aws(dry_run=dry_run)
    result = delete_cf_stack(
        aws, region, stack_name, dry_run=dry_run, waiting=_waiting(timeout, poll_interval)
    )
    return finish(opts, aws, result, detailed_exitcode=detailed_exitcode)


@cli.command("status")
@_REGION
@_STACK
@click.option(
    "--template",
    "template_json",
    type=click.Path(dir_okay=False, readable=False),
    help="A local template to compare with the deployed one.",
)
@click.pass_obj
def status_cmd(opts: Options, region: str, stack_name: str, template_json: str | None) -> int:
    """Show the stack, its last event, the group and each of its instances.

    Read-only: stack STACK_NAME in REGION, its status and last event, the group's sizes, and each
    instance with the Datomic role it publishes (active, standby, - when none) and its launch
    template version, current or outdated. --template compares a local template with the
    deployed one.

    Exit codes for scripts: 0 when the stack, the template (with --template) and the instances
    are in sync; 3 when the stack is missing or in progress, the local template differs from the
    deployed one, or an instance is outdated (the JSON's "out_of_sync" says which).

    \b
    Example:
      datomic-aws status us-east-1 datomic-prod --template aws/prod/cf.json
    """
    from datomic_aws.checks import check_stack_arguments
    from datomic_aws.deploy import stack_status

    check_stack_arguments(region, stack_name)
    template = (
        _stack_template(region, stack_name, template_json, deploys=False) if template_json else None
    )
    aws = opts.aws(dry_run=True)
    result = stack_status(aws, region, stack_name, template=template)
    finish(opts, aws, result, detailed_exitcode=False)
    in_sync = result.extra["status"].get("in_sync", False)
    return int(ExitCode.OK if in_sync else ExitCode.CHANGES_PENDING)


@cli.command("apply")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False, readable=False))
@click.option(
    "--recreate-failed",
    is_flag=True,
    help="Recreate a stack left in ROLLBACK_COMPLETE (only one carrying our tags).",
)
@_replacement_options
@change_options(adopt=True)
@wait_options
@click.pass_obj
def apply_cmd(
    opts: Options,
    directory: str,
    recreate_failed: bool,
    yes: bool,
    strategy: str,
    no_replace: bool,
    dry_run: bool,
    detailed_exitcode: bool,
    adopt: bool,
    timeout: float,
    poll_interval: float,
) -> int:
    """Run the whole sequence for one environment folder.

    ensure-transactor DIR/transactor.properties, ensure-cf DIR/cf.properties, create-cf-template
    into DIR/cf.json, then create-cf-stack or update-stack (with replacement) for the stack named
    by aws-stack-name in cf.properties.

    \b
    Example:
      datomic-aws apply aws/prod
      datomic-aws apply --dry-run --detailed-exitcode aws/prod
    """
    from datomic_aws.deploy import Replacement, apply_dir, validate_folder
    from datomic_aws.stack.transport import DRY_RUN_WRITES

    _check_detailed(dry_run, detailed_exitcode)
    validate_folder(directory, dry_run=dry_run)
    if strategy == "terminate" and not no_replace and not dry_run:
        from datomic_aws.replace import TERMINATE_WARNING

        _echo_err(f"Warning: {TERMINATE_WARNING}")
        _confirm(yes, "Replace the instances with downtime if the launch template changes?")
    aws = opts.aws(dry_run=dry_run, allowed_writes=DRY_RUN_WRITES)
    with opts.locked(os.path.join(directory, "cf.json"), dry_run=dry_run):
        result = apply_dir(
            aws,
            directory,
            dry_run=dry_run,
            adopt=adopt,
            recreate_failed=recreate_failed,
            replacement=Replacement(
                strategy="terminate" if strategy == "terminate" else "surge",
                enabled=not no_replace,
            ),
            waiting=_waiting(timeout, poll_interval),
        )
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
    """Run the whole loop against an embedded AWS (moto): no account needed.

    moto listens on 127.0.0.1 inside the process. Needs the sandbox extra: pip install 'datomic-aws[sandbox]'.

    \b
    Example:
      datomic-aws demo
      datomic-aws demo --dir /tmp/datomic-demo
    """
    from datomic_aws.sandbox.demo import run_demo

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
        doc: dict[str, Any] = {"command": opts.command, "error": error}
        if opts.contexts:
            # What the failed run did call: a refusal shows "mutating": 0 for scripts to check.
            from datomic_aws.aws import CallLog

            log = CallLog()
            for aws in opts.contexts:
                log.calls.update(aws.call_log.calls)
            doc["aws_calls"] = log.as_dict()
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    return int(exc.exit_code)


def _as_catalogue_error(exc: Exception) -> DatomicAwsError | None:
    """botocore's own exceptions, for the cases a module let through."""
    if "botocore" not in sys.modules:
        return None
    import botocore.exceptions

    from datomic_aws.aws import translate, unreadable_answer
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
    unreadable = unreadable_answer(exc)
    if unreadable is not None:
        return unreadable
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return DatomicAwsError(f"AWS SDK error: {exc}", "", "rerun with --debug for details")
    return None


def _as_file_error(exc: Exception) -> DatomicAwsError | None:
    """A file or folder the environment refused after the up-front checks (a folder made
    read-only during the run, a full disk): one line, exit 1."""
    from datomic_aws.errors import FileAccessError

    if isinstance(exc, OSError) and exc.filename is not None:
        return FileAccessError(
            f"cannot use the file: {exc.strerror or type(exc).__name__}",
            str(exc.filename),
            "check the permissions, the free space and that the file system is writable",
        )
    return None


def _on_interrupt(run: list[click.Context]) -> Callable[[int, Any], None]:
    """SIGINT and SIGTERM (what CI sends to cancel a job) alike: the first one cancels the run's
    AWS calls in other threads and raises KeyboardInterrupt in the main thread, whose unwinding
    restores what must be restored (a raised group's sizes, a half-written file, the locks);
    later ones only say so, so that the cleanup itself is not cut short."""
    seen: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        seen.append(signum)
        opts = _opts(run[0]) if run else None
        for aws in opts.contexts if opts is not None else ():
            aws.cancel()
        if len(seen) == 1:
            raise KeyboardInterrupt
        # os.write, not click.echo: the handler may run inside a write to the same stream.
        os.write(
            2, b"datomic-aws: stopping; restoring what this run changed (SIGKILL stops at once)\n"
        )

    return handler


@contextlib.contextmanager
def _interrupt_handlers(run: list[click.Context]) -> Iterator[None]:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    handler = _on_interrupt(run)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    # A signal the parent set to be ignored (nohup, a background job) stays ignored.
    if previous[signal.SIGINT] is signal.default_int_handler:
        signal.signal(signal.SIGINT, handler)
    if previous[signal.SIGTERM] == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def main(argv: list[str] | None = None) -> None:
    """The one error funnel: every failure becomes one `Error:` line and a named exit code."""
    ctx: click.Context | None = None
    run: list[click.Context] = []
    code: int
    try:
        with _interrupt_handlers(run):
            ctx = cli.make_context("datomic-aws", list(sys.argv[1:] if argv is None else argv))
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
        known = _as_catalogue_error(exc) or _as_file_error(exc)
        if known is None:
            _echo_err(f"Error: internal error: {type(exc).__name__}: {exc}")
            _echo_err("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            code = int(ExitCode.FAILURE)
        else:
            known.__traceback__ = exc.__traceback__
            known.__cause__ = exc  # --debug shows botocore's own exception (an answer, say)
            code = _report(known, _opts(ctx))
    sys.exit(code)


def _usage_json(exc: click.ClickException, opts: Options | None, code: int) -> None:
    """--output json promises one document on stdout, click's own refusals (a wrong argument)
    included; click has already written its usage text to stderr."""
    if opts is not None and opts.output == "json":
        error = {"messages": [f"Error: {exc.format_message()}"], "exit_code": code}
        click.echo(json.dumps({"command": opts.command, "error": error}, indent=2, sort_keys=True))


def _opts(ctx: click.Context | None) -> Options | None:
    return ctx.obj if ctx is not None and isinstance(ctx.obj, Options) else None
