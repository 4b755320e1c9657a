"""create-cf-stack, update-stack and delete-cf-stack as commands: the template file read and
checked at the edge, the AwsContext made with the writes a dry run of that template may make,
then the stack function (deploy.py) on the document.

It must not print or prompt (cli.py confirms before calling), or call AWS but through deploy.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from datomic_aws.app.documents import Template, read_template

if TYPE_CHECKING:
    from datomic_aws import stack
    from datomic_aws.aws import AwsContext
    from datomic_aws.changes import Result
    from datomic_aws.deploy import Replacement


class Session(Protocol):
    """The one session factory (cli.Options.aws): every AwsContext of a run comes from it."""

    def __call__(
        self, *, dry_run: bool = False, allowed_writes: frozenset[str] = frozenset()
    ) -> AwsContext: ...


def stack_template(
    region: str, stack_name: str, template_json: str | Path, *, deploys: bool = True
) -> Template:
    """REGION, STACK_NAME and TEMPLATE_JSON checked before any call: a known region, a valid stack
    name, a readable JSON template generated for that region (and, for the commands that deploy
    it, by datomic-aws)."""
    from datomic_aws.checks import (
        check_stack_arguments,
        check_template_region,
        check_template_system,
    )

    check_stack_arguments(region, stack_name)
    template = read_template(template_json)
    if deploys:
        check_template_system(template.system, template.path)
    check_template_region(region, template.region, template.path)
    return template


def _context(session: Session, template: Template, *, dry_run: bool) -> AwsContext:
    from datomic_aws.stack.transport import dry_run_writes

    writes = dry_run_writes(template.text) if dry_run else frozenset()
    return session(dry_run=dry_run, allowed_writes=writes)


def create(
    session: Session,
    region: str,
    name: str,
    template: Template,
    *,
    dry_run: bool,
    recreate_failed: bool,
    waiting: stack.Waiting,
) -> Result:
    """create-cf-stack REGION STACK_NAME TEMPLATE_JSON."""
    from datomic_aws.deploy import create_cf_stack

    ctx = _context(session, template, dry_run=dry_run)
    return create_cf_stack(
        ctx,
        region,
        name,
        template,
        dry_run=dry_run,
        recreate_failed=recreate_failed,
        waiting=waiting,
    )


def update(
    session: Session,
    region: str,
    name: str,
    template: Template,
    *,
    dry_run: bool,
    adopt: bool,
    replacement: Replacement,
    waiting: stack.Waiting,
) -> Result:
    """update-stack REGION STACK_NAME TEMPLATE_JSON: the stack, then the instances."""
    from datomic_aws.deploy import update_cf_stack

    ctx = _context(session, template, dry_run=dry_run)
    return update_cf_stack(
        ctx,
        region,
        name,
        template,
        dry_run=dry_run,
        adopt=adopt,
        replacement=replacement,
        waiting=waiting,
    )


def delete(
    session: Session, region: str, name: str, *, dry_run: bool, waiting: stack.Waiting
) -> Result:
    """delete-cf-stack REGION STACK_NAME (arguments checked by the caller, before its prompt)."""
    from datomic_aws.deploy import delete_cf_stack

    return delete_cf_stack(session(dry_run=dry_run), region, name, dry_run=dry_run, waiting=waiting)


def status(
    session: Session,
    region: str,
    name: str,
    template_json: str | Path | None = None,
    transactor: str | Path | None = None,
) -> Result:
    """status REGION STACK_NAME [--template TEMPLATE_JSON] [--transactor TRANSACTOR_PROPS]:
    read-only; the files are read and checked before any call."""
    from datomic_aws.app.status import stack_status
    from datomic_aws.checks import check_stack_arguments
    from datomic_aws.config.transactor import load_transactor

    template = None
    if template_json:
        template = stack_template(region, name, template_json, deploys=False)  # checks the names
    else:
        check_stack_arguments(region, name)
    spec = load_transactor(transactor)[1] if transactor else None
    return stack_status(session(dry_run=True), region, name, template=template, transactor=spec)
