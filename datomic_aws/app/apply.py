"""apply DIR: ensure-transactor, ensure-cf, create-cf-template, then create or update the stack.

Owns the sequence on one environment folder and its data flow: both properties files are loaded
once (`Inputs`), the stack is read once (the ownership check; its StackInfo decides create or
update and goes on to the stack step), the ensure steps' new file contents (written, or what a dry
run would write) become the specs the template is rendered from, once, and the rendered document
is what the stack step deploys. It must not print, and writes files only through the ensure steps
and the template's `write_if_changed`.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

from datomic_aws import names, stack
from datomic_aws.app.documents import Template, template_from_doc
from datomic_aws.app.inputs import Inputs, load_both
from datomic_aws.app.signals import worker_pool
from datomic_aws.app.template import template_result
from datomic_aws.aws import AwsContext
from datomic_aws.aws_errors import translating
from datomic_aws.changes import Result
from datomic_aws.checks import APPLY_FILES, APPLY_TEMPLATE
from datomic_aws.config.cf import CfSpec, load_cf_text
from datomic_aws.config.transactor import load_transactor_text
from datomic_aws.deploy import Replacement, create_cf_stack, read_stack, update_cf_stack
from datomic_aws.errors import InvalidInput
from datomic_aws.template import Rendered, render_template


def check_folder(directory: str | Path, *, dry_run: bool = False) -> Inputs:
    """apply's checks that need no AWS: the folder and its files, both files' values and what
    they must agree on (every problem of both). Run by the CLI before it takes the folder lock,
    so that invalid input leaves nothing behind; the Inputs go on to `apply_dir`."""
    from datomic_aws.checks import check_apply_folder

    read = check_apply_folder(directory, writable=not dry_run)
    folder = Path(directory)
    return load_both(folder / APPLY_FILES[0], folder / APPLY_FILES[1], read=read)


def apply_dir(
    ctx: AwsContext,
    directory: str | Path,
    *,
    dry_run: bool = False,
    adopt: bool = False,
    recreate_failed: bool = False,
    replacement: Replacement | None = None,
    waiting: stack.Waiting | None = None,
    inputs: Inputs | None = None,
) -> Result:
    """apply DIR: ensure-transactor, ensure-cf, create-cf-template, then create or update.

    Validate first (design §7): the paths, both files and what they must agree on (`inputs`, as
    the CLI checked them before its folder lock, re-read only if a file changed since), then the
    stack's owner and every read-only AWS check of both ensure steps (side by side; the owner's
    refusal first), all before the first write. Only then do the ensure steps write.
    """
    loaded = inputs.fresh() if inputs is not None else check_folder(directory, dry_run=dry_run)
    folder = Path(directory)
    owner, first, second = _ensure_steps(
        ctx, loaded, folder, adopt=adopt, recreate_failed=recreate_failed, dry_run=dry_run
    )
    checked = (loaded.stack_name, loaded.cf.region)
    result = Result("apply", dry_run=dry_run)
    result.merge(first)
    result.merge(second)
    rendered = _render(loaded, first, second, folder / APPLY_TEMPLATE, result)
    if rendered is None:
        return result
    made, cf, system = rendered
    result.merge(template_result(made, folder / APPLY_TEMPLATE, dry_run=dry_run))
    document = template_from_doc(made.doc, made.text, str(folder / APPLY_TEMPLATE))
    name = names.stack_or_default(cf.stack_name, system)
    result.extra.update(stack=name, region=cf.region)
    # The stack as the ownership check read it, unless ensure-cf named another one.
    info = owner if checked == (name, cf.region) else read_stack(ctx, cf.region, name)
    step = _stack_step(
        ctx,
        document,
        cf.region,
        name,
        info,
        dry_run=dry_run,
        adopt=adopt,
        recreate_failed=recreate_failed,
        replacement=replacement or Replacement(),
        waiting=waiting,
    )
    result.merge(step)
    return result


def _check_stack_owner(
    ctx: AwsContext, loaded: Inputs, *, adopt: bool, recreate_failed: bool
) -> stack.StackInfo | None:
    """Before apply's first write: the stack (and its group) must be this system's, or untagged
    with `adopt` (design §7), and in a state the stack step will accept. The stack as read."""
    name = loaded.stack_name
    with translating(f"stack {name}"):
        return stack.check_ownership(
            ctx,
            loaded.cf.region,
            name,
            system=loaded.transactor.system,
            adopt=adopt,
            recreate_failed=recreate_failed,
        )


def _ensure_steps(
    ctx: AwsContext,
    loaded: Inputs,
    folder: Path,
    *,
    adopt: bool,
    recreate_failed: bool,
    dry_run: bool,
) -> tuple[stack.StackInfo | None, Result, Result]:
    """The stack's owner check and every check of ensure-transactor and ensure-cf, then the
    writes of both. The stack as the owner check read it, and both steps' results."""
    from datomic_aws.app.ensure_cf import converge_cf, prepare_cf
    from datomic_aws.app.ensure_transactor import converge_transactor, plan_transactor

    transactor, cf = folder / APPLY_FILES[0], folder / APPLY_FILES[1]
    # The owner check and the two ensure steps read disjoint resources and write nothing: they run
    # side by side, and every input problem of both ensure steps is reported together.
    with worker_pool(3) as pool:
        owner_job = pool.submit(
            _check_stack_owner, ctx, loaded, adopt=adopt, recreate_failed=recreate_failed
        )
        planned_job = pool.submit(
            plan_transactor,
            ctx,
            transactor,
            adopt=adopt,
            extra_warnings=loaded.warnings,
            loaded=(loaded.transactor_props, loaded.transactor),
        )
        cf_job = pool.submit(prepare_cf, ctx, cf, adopt=adopt, loaded=(loaded.cf_props, loaded.cf))
        # The stack (and its group) must be this system's before anything is written: its
        # refusal comes first, as if it had been checked alone.
        owner = owner_job.result()
        planned, cf_run = _both(planned_job, cf_job)
    # Nothing was written so far. The writes touch disjoint resources and files: side by side too.
    with worker_pool(2) as pool:
        first_job = pool.submit(converge_transactor, ctx, planned, dry_run=dry_run)
        second_job = pool.submit(converge_cf, ctx, cf_run, dry_run=dry_run)
        return (owner, *_both(first_job, second_job))


def _render(
    loaded: Inputs, first: Result, second: Result, template_path: Path, result: Result
) -> tuple[Rendered, CfSpec, str] | None:
    """The template, rendered once from the files as this run wrote them (or, in a dry run,
    would have): the ensure steps' contents in memory, never read back from disk. With the cf
    spec and the system. None (with a warning) in a dry run whose cf file still lacks what only
    ensure-cf's writes provide."""
    try:
        transactor = load_transactor_text(
            _content(first, loaded.transactor_props.text), loaded.transactor_props.path
        )[1]
        cf = load_cf_text(_content(second, loaded.cf_props.text), loaded.cf_props.path)[1]
        return render_template(transactor, cf, where=str(template_path)), cf, transactor.system
    except InvalidInput:
        if not result.dry_run:
            raise
        result.warnings.append(
            "the template and the stack are planned once ensure-cf has created the security "
            "group: run apply without --dry-run"
        )
        return None


def _content(step: Result, original: str) -> str:
    return next((f.content for f in step.files if f.content is not None), original)


def _stack_step(
    ctx: AwsContext,
    template: Template,
    region: str,
    name: str,
    info: stack.StackInfo | None,
    *,
    dry_run: bool,
    adopt: bool,
    recreate_failed: bool,
    replacement: Replacement,
    waiting: stack.Waiting | None,
) -> Result:
    """create-cf-stack or update-stack, decided from the stack as apply read it."""
    # REVIEW_IN_PROGRESS: a create that died between its change set and its execution.
    creating = (
        info is None
        or info.state is stack.StackState.REVIEW
        or (info.state is stack.StackState.ROLLBACK_COMPLETE and recreate_failed)
    )
    if creating:
        return create_cf_stack(
            ctx,
            region,
            name,
            template,
            dry_run=dry_run,
            recreate_failed=recreate_failed,
            waiting=waiting,
            known=info,
        )
    return update_cf_stack(
        ctx,
        region,
        name,
        template,
        dry_run=dry_run,
        adopt=adopt,
        replacement=replacement,
        waiting=waiting,
        known=info,
    )


A = TypeVar("A")
B = TypeVar("B")


def _both(first: Future[A], second: Future[B]) -> tuple[A, B]:
    """Both results, after both finished; when both failed on input, every problem of both."""
    errors = [f.exception() for f in (first, second)]
    problems = [p for e in errors if isinstance(e, InvalidInput) for p in e.problems]
    if problems and all(e is None or isinstance(e, InvalidInput) for e in errors):
        raise InvalidInput(problems)
    for error in errors:
        if error is not None:
            raise error
    return first.result(), second.result()
