"""apply DIR DIR...: several environment folders (one system each), side by side.

Owns the fleet's order of work and its outcome: every folder is checked first (no AWS; an invalid
folder is reported and never run, so it writes nothing), two folders naming the same system or
stack are refused before anything runs, then the valid folders run `apply_dir` at most `jobs` at a
time, each with its own AwsContext (its own botocore session and clients, its call log), its own
folder lock and the stack lock apply takes; one folder failing does not stop the others. Owns
`AccountReads`, the run's memo of the reads that depend on the account and region only (never
on a system), answered once for every folder. The fleet's exit code is the worst of the folders'
(`worst`).

It must not print: progress lines go through the run's Waiting sink, prefixed with the folder,
and the report is returned as text and a JSON document for cli.py to write.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypedDict

from datomic_aws.app.signals import worker_pool
from datomic_aws.errors import DatomicAwsError, ExitCode, InvalidInput, UsageError

if TYPE_CHECKING:
    from datomic_aws.app.inputs import Inputs
    from datomic_aws.app.session import Options
    from datomic_aws.aws import AwsContext, Hook
    from datomic_aws.changes import Result
    from datomic_aws.deploy import Replacement
    from datomic_aws.stack import Waiting

# Reads that answer the same for every system of an account and region, and that no step of the
# tool writes: the caller's identity, VPCs and subnets (never created by datomic-aws), instance
# types, their zone offerings, and images. Everything else (a group, a role, a bucket, a stack, a
# parameter, a lock) belongs to one system and is never shared.
SHARED_READS = frozenset(
    {
        "sts:GetCallerIdentity",
        "ec2:DescribeVpcs",
        "ec2:DescribeSubnets",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeInstanceTypeOfferings",
        "ec2:DescribeImages",
    }
)
_MEMO_KEY = "datomic_aws_shared_read"
# How long a folder waits for another folder's identical read before asking AWS itself.
_WAIT_FOR_READ = 120.0

# The worst first: an interrupted run (state may be half-way), an AWS failure (a folder may be
# half-converged), refused input (nothing written), changes pending (--detailed-exitcode), OK.
SEVERITY = (
    ExitCode.INTERRUPTED,
    ExitCode.FAILURE,
    ExitCode.USAGE,
    ExitCode.CHANGES_PENDING,
    ExitCode.OK,
)


def worst(codes: Iterable[int]) -> int:
    """The fleet's exit code: the most severe of the folders' codes (SEVERITY; an unknown code
    counts as a failure)."""
    rank = {int(code): n for n, code in enumerate(SEVERITY)}
    known = [c if c in rank else int(ExitCode.FAILURE) for c in codes]
    return min(known, key=lambda c: rank[c], default=int(ExitCode.OK))


class AccountReads:
    """The run's answers to SHARED_READS, per account and region: the first folder to ask sends
    the call, a folder asking the same meanwhile waits for its answer, later ones reuse it. Only
    successful answers are kept. A run has one set of credentials (its --profile), hence one
    account: `scope` names it in the key.

    Installed through botocore's events (AwsContext `hooks`): a `before-call` handler that
    returns a response short-circuits the call, as botocore's Stubber does."""

    def __init__(self, scope: str = "") -> None:
        self.scope = scope
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, ...], dict[str, Any]] = {}
        self._pending: dict[tuple[str, ...], threading.Event] = {}
        self.sent: Counter[str] = Counter()

    def hooks(self, served: Counter[str]) -> list[Hook]:
        """One folder's handlers; `served` counts the calls the memo answered for it."""

        def before(model: Any, params: Any, context: dict[str, Any], **_: Any) -> Any:
            return self._before(model, params, context, served)

        return [
            ("before-call.*.*", before),
            ("after-call.*.*", self._after),
            ("after-call-error", self._after_error),
        ]

    def _before(
        self, model: Any, params: Any, context: dict[str, Any], served: Counter[str]
    ) -> Any:
        action = f"{model.service_model.endpoint_prefix}:{model.name}"
        if action not in SHARED_READS:
            return None
        key = (self.scope, str(context.get("client_region")), action, _canonical(params))
        while True:
            with self._lock:
                if key in self._answers:
                    served[action] += 1
                    return _answer(self._answers[key])
                event = self._pending.get(key)
                if event is None:
                    self._pending[key] = threading.Event()
                    self.sent[action] += 1
                    context[_MEMO_KEY] = key
                    return None
            if not event.wait(_WAIT_FOR_READ):
                return None

    def _after(self, http_response: Any, parsed: Any, context: dict[str, Any], **_: Any) -> None:
        key = context.pop(_MEMO_KEY, None)
        if key is None:
            return
        with self._lock:
            if http_response is not None and http_response.status_code < 300:
                self._answers[key] = copy.deepcopy(parsed)
            self._release(key)

    def _after_error(self, context: dict[str, Any], **_: Any) -> None:
        key = context.pop(_MEMO_KEY, None)
        if key is not None:
            with self._lock:
                self._release(key)

    def _release(self, key: tuple[str, ...]) -> None:
        event = self._pending.pop(key, None)
        if event is not None:
            event.set()


def _canonical(params: Any) -> str:
    body = params.get("body")
    body = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    request = [params.get("url_path"), params.get("query_string"), body]
    return json.dumps(request, sort_keys=True, default=str)


def _answer(parsed: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from botocore.awsrequest import AWSResponse
    from botocore.compat import HTTPHeaders

    return AWSResponse("", 200, HTTPHeaders(), None), copy.deepcopy(parsed)


@dataclass
class FolderRun:
    """One folder of the fleet: its inputs (None when invalid) and how it ended."""

    folder: str
    inputs: Inputs | None = None
    result: Result | None = None
    error: DatomicAwsError | None = None
    skipped: bool = False
    exit_code: int = int(ExitCode.OK)
    # The calls sent to AWS for this folder, and those the shared memo answered instead.
    calls: Counter[str] = field(default_factory=Counter)
    served: Counter[str] = field(default_factory=Counter)

    @property
    def system(self) -> str:
        return self.inputs.transactor.system if self.inputs is not None else ""

    def fail(self, error: DatomicAwsError) -> None:
        self.error, self.exit_code = error, int(error.exit_code)

    def outcome(self) -> str:
        if self.skipped:
            return "skipped"
        if self.error is not None:
            return f"failed: {_reason(self.error)}"
        assert self.result is not None
        changed = sum(1 for c in self.result.changes if c.changed)
        changed += sum(1 for f in self.result.files if f.changed)
        if not changed:
            return "no change"
        return f"{'would change' if self.result.dry_run else 'changed'} {changed}"


def _reason(error: DatomicAwsError, width: int = 72) -> str:
    """The first problem, without its place and hint (stderr has every line whole)."""
    problems = error.problems if isinstance(error, InvalidInput) else []
    line = problems[0].message if problems else error.lines()[0].removeprefix("Error: ")
    line += f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return line if len(line) <= width else line[: width - 3] + "..."


@dataclass(frozen=True)
class Settings:
    """apply's options, the same for every folder."""

    dry_run: bool = False
    adopt: bool = False
    recreate_failed: bool = False
    detailed_exitcode: bool = False
    jobs: int | None = None
    waiting: Waiting | None = None
    replacement: Replacement | None = None

    def options(self, replacement: Replacement | None = None) -> ApplyOptions:
        """apply_dir's keyword arguments (`replacement`: once the operator confirmed it)."""
        return ApplyOptions(
            dry_run=self.dry_run,
            adopt=self.adopt,
            recreate_failed=self.recreate_failed,
            replacement=replacement or self.replacement,
            waiting=self.waiting,
        )


class ApplyOptions(TypedDict):
    dry_run: bool
    adopt: bool
    recreate_failed: bool
    replacement: Replacement | None
    waiting: Waiting | None


def check_fleet(directories: Sequence[str], *, dry_run: bool = False) -> list[FolderRun]:
    """Every folder's checks that need no AWS (apply's `check_folder`); an invalid folder is
    marked failed and never runs. Two valid folders naming the same system, or the same stack
    in the same region, are refused (exit 2) before anything runs."""
    from datomic_aws.app.apply import check_folder
    from datomic_aws.app.failures import as_file_error

    runs = [FolderRun(d) for d in directories]
    for run in runs:
        try:
            run.inputs = check_folder(run.folder, dry_run=dry_run)
        except DatomicAwsError as exc:
            run.fail(exc)
        except OSError as exc:
            run.fail(as_file_error(exc) or DatomicAwsError(str(exc)))
    _refuse_shared(runs)
    return runs


def _refuse_shared(runs: list[FolderRun]) -> None:
    seen: dict[tuple[str, str], FolderRun] = {}
    for run in runs:
        if run.inputs is None:
            continue
        loaded = run.inputs
        for key in (("system", loaded.transactor.system), ("stack", _stack_key(loaded))):
            other = seen.setdefault(key, run)
            if other is not run:
                raise UsageError(
                    f"folders {other.folder} and {run.folder} both name {key[0]} {key[1]}",
                    "",
                    "give each system one folder; nothing was run",
                )


def _stack_key(loaded: Inputs) -> str:
    return f"{loaded.stack_name} ({loaded.cf.region})"


def run_fleet(opts: Options, runs: list[FolderRun], settings: Settings) -> Fleet:
    """The valid folders, `settings.jobs` at a time (default: up to 4), each converged by
    `apply_dir` with its own context and lock. An interrupt (the CLI's handler cancels every
    context's calls) stops each running folder at its next AWS call, which then unwinds as a
    single apply does (a raised group's sizes and the stack lock restored); the folders not
    started yet are skipped."""
    from datomic_aws.stack.transport import DRY_RUN_WRITES

    memo = AccountReads(opts.profile or "")
    shared: set[str] = set()
    ready = [r for r in runs if r.inputs is not None]
    jobs = settings.jobs or min(4, max(1, len(ready)))
    futures: dict[Future[None], FolderRun] = {}
    with worker_pool(jobs, thread_name_prefix="fleet") as pool:
        for run in ready:
            aws = opts.aws(dry_run=settings.dry_run, allowed_writes=DRY_RUN_WRITES)
            aws.hooks = memo.hooks(run.served)  # before its session exists: see AwsContext
            aws.converged = shared  # the templates bucket of an account and region, once
            futures[pool.submit(_run_folder, opts, aws, run, settings)] = run
        try:
            wait(futures)
        except KeyboardInterrupt:
            for future, run in futures.items():
                run.skipped = future.cancel()
            wait(futures)
            return Fleet(runs, settings.dry_run, memo, interrupted=True)
    return Fleet(runs, settings.dry_run, memo)


def _run_folder(opts: Options, aws: AwsContext, run: FolderRun, settings: Settings) -> None:
    from datomic_aws.app.apply import apply_dir

    # An interrupt reaches this thread as one Interrupted; its unwinding's calls then go through.
    aws.runner = threading.get_ident()
    try:
        with opts.locked(os.path.join(run.folder, "cf.json"), dry_run=settings.dry_run):
            options = settings.options()
            options["waiting"] = _prefixed(settings.waiting, run.folder)
            run.result = apply_dir(aws, run.folder, inputs=run.inputs, **options)
        pending = settings.detailed_exitcode and run.result.pending
        run.exit_code = int(ExitCode.CHANGES_PENDING if pending else ExitCode.OK)
    except Exception as exc:  # one folder failing does not stop the others
        run.fail(_as_error(exc))
    finally:
        # The folder's own calls: those sent, not those the shared memo answered.
        run.calls = aws.call_log.calls - run.served


def _prefixed(waiting: Waiting | None, folder: str) -> Waiting | None:
    if waiting is None:
        return None
    sink = waiting.on_event
    return replace(waiting, on_event=lambda line: sink(f"{folder}: {line}"))


def _as_error(exc: Exception) -> DatomicAwsError:
    """What the CLI's funnel would make of the exception (app/failures.py)."""
    from datomic_aws.app.failures import as_catalogue_error, as_file_error

    if isinstance(exc, DatomicAwsError):
        return exc
    known = as_catalogue_error(exc) or as_file_error(exc)
    return known or DatomicAwsError(f"internal error: {type(exc).__name__}: {exc}")


@dataclass
class Fleet:
    """The fleet's outcome, per folder in the order given, and its report."""

    runs: list[FolderRun]
    dry_run: bool
    memo: AccountReads
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        codes = [r.exit_code for r in self.runs]
        return worst([*codes, ExitCode.INTERRUPTED] if self.interrupted else codes)

    def calls(self, run: FolderRun | None = None) -> dict[str, Any]:
        from datomic_aws.aws import CallLog

        log = CallLog()
        for each in [run] if run is not None else self.runs:
            log.calls.update(each.calls)
        return log.as_dict()

    def stderr_text(self) -> str:
        """Each folder's warnings and error lines, prefixed with the folder."""
        from datomic_aws.render import warnings_text

        lines: list[str] = []
        for run in self.runs:
            text = warnings_text(run.result) if run.result is not None else ""
            text += "".join(f"{line}\n" for line in (run.error.lines() if run.error else []))
            lines.extend(f"{run.folder}: {line}\n" for line in text.splitlines())
        return "".join(lines)

    def output(self, output: str, *, color: bool = False) -> str:
        return self.document() if output == "json" else self.text(color=color)

    def text(self, *, color: bool = False) -> str:
        """Each folder's report (as a single apply prints it), then the summary table."""
        from datomic_aws.render import calls_line, to_text

        parts = []
        for run in self.runs:
            if run.result is not None:
                report = to_text(run.result, self.calls(run), color=color)
                parts.append(f"==> {run.folder} <==\n{report}\n")
        rows = [("FOLDER", "SYSTEM", "OUTCOME", "AWS CALLS")]
        for run in self.runs:
            calls = self.calls(run)
            rows.append((run.folder, run.system or "-", run.outcome(),
                         f"{calls['total']} ({calls['mutating']} mutating)"))  # fmt: skip
        widths = [max(len(row[n]) for row in rows) for n in range(3)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
            parts.append("  ".join([*cells, row[3]]).rstrip() + "\n")
        parts.append(f"{self.headline()} {calls_line(self.calls())}\n")
        return "".join(parts)

    def headline(self) -> str:
        failed = sum(1 for r in self.runs if r.error is not None)
        skipped = sum(1 for r in self.runs if r.skipped)
        done = len(self.runs) - failed - skipped
        verb = "planned" if self.dry_run else "converged"
        tail = f", {skipped} skipped" if skipped else ""
        return f"{len(self.runs)} folders: {done} {verb}, {failed} failed{tail}."

    def document(self) -> str:
        """One JSON document: a list of per-folder results (each as a single apply reports it,
        or its error), the shared reads, the total AWS calls and the exit code."""
        from datomic_aws.render import to_json

        folders = []
        for run in self.runs:
            entry: dict[str, Any] = {
                "folder": run.folder,
                "system": run.system,
                "outcome": run.outcome(),
                "exit_code": run.exit_code,
                "aws_calls": self.calls(run),
            }
            if run.result is not None:
                entry["result"] = json.loads(to_json(run.result, self.calls(run)))
            if run.error is not None:
                entry["error"] = {"messages": run.error.lines(), "exit_code": run.exit_code}
            folders.append(entry)
        doc = {
            "command": "apply",
            "dry_run": self.dry_run,
            "folders": folders,
            "shared_reads": dict(sorted(self.memo.sent.items())),
            "aws_calls": self.calls(),
            "exit_code": self.exit_code,
        }
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def run_folders(
    opts: Options,
    directories: Sequence[str],
    settings: Settings,
    confirm: Callable[[], Replacement],
) -> Fleet:
    """check_fleet, then (every check passed or reported) the replacement's confirmation, then
    run_fleet."""
    runs = check_fleet(directories, dry_run=settings.dry_run)
    return run_fleet(opts, runs, replace(settings, replacement=confirm()))
