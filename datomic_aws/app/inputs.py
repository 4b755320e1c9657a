"""The two properties files of an environment, loaded once per run (an edge: this reads files).

Owns `Inputs`: both files' text and specs, read and validated together so that every problem of
both is reported at once, and `fresh`, the one re-read after the folder lock (another run may
have rewritten the files while this one waited; unchanged text is not parsed again). It must not
call AWS or write files.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from datomic_aws import names
from datomic_aws.config.cf import CfSpec, load_cf
from datomic_aws.config.cf import spec_from as cf_spec
from datomic_aws.config.common import read_properties
from datomic_aws.config.transactor import TransactorSpec, load_transactor
from datomic_aws.config.transactor import spec_from as transactor_spec
from datomic_aws.errors import InvalidInput, Problem
from datomic_aws.properties import PropertiesText


@dataclass(frozen=True)
class Inputs:
    transactor_props: PropertiesText
    transactor: TransactorSpec
    cf_props: PropertiesText
    cf: CfSpec
    # The transactor file's warnings, worded for the cf file's Datomic version (apply only).
    warnings: tuple[str, ...] = ()
    # Whether what both files must agree on was checked (load_both), and is checked again.
    cross_checked: bool = False

    @property
    def stack_name(self) -> str:
        return names.stack_or_default(self.cf.stack_name, self.transactor.system)

    def fresh(self) -> Inputs:
        """The files as they are now: self when neither text changed since it was loaded."""
        paths = (self.transactor_props.path, self.cf_props.path)
        texts = [read_properties(p).text for p in paths]
        if texts == [self.transactor_props.text, self.cf_props.text]:
            return self
        return load_both(*paths) if self.cross_checked else load_pair(*paths)


def load_pair(
    transactor_path: str | Path,
    cf_path: str | Path,
    *,
    read: tuple[PropertiesText, PropertiesText] | None = None,
) -> Inputs:
    """Both files (or their text, when `read` already), every problem of both reported together
    (InvalidInput)."""
    problems: list[Problem] = []
    transactor: tuple[PropertiesText, TransactorSpec] | None = None
    cf: tuple[PropertiesText, CfSpec] | None = None
    try:
        transactor = (
            load_transactor(transactor_path)
            if read is None
            else (read[0], transactor_spec(read[0]))
        )
    except InvalidInput as exc:
        problems.extend(exc.problems)
    try:
        cf = load_cf(cf_path) if read is None else (read[1], cf_spec(read[1]))
    except InvalidInput as exc:
        problems.extend(exc.problems)
    if problems or transactor is None or cf is None:
        raise InvalidInput(problems)
    return Inputs(transactor[0], transactor[1], cf[0], cf[1])


def load_both(
    transactor_path: str | Path,
    cf_path: str | Path,
    *,
    read: tuple[PropertiesText, PropertiesText] | None = None,
) -> Inputs:
    """apply's files: both loaded, and what they must agree on, before any AWS call; every
    problem of both is reported."""
    problems: list[Problem] = []
    warnings: list[str] = []
    try:
        inputs = load_pair(transactor_path, cf_path, read=read)
    except InvalidInput as exc:
        problems.extend(exc.problems)
    else:
        from datomic_aws.template import cross_file_checks

        cross, warnings = cross_file_checks(inputs.transactor, inputs.cf)
        problems.extend(cross)
    if problems:
        raise InvalidInput(problems)
    return replace(inputs, warnings=tuple(warnings), cross_checked=True)


def check_ensure_paths(
    kind: str, input_path: str, output_path: str | None, *, dry_run: bool
) -> None:
    """ensure-transactor's or ensure-cf's (`kind`) paths and file, before the folder lock and any
    AWS call: a wrong path, an unparsable or invalid properties file is refused and leaves no
    lock file."""
    from datomic_aws.checks import check_output, check_properties_input

    read = check_properties_input(input_path)
    check_output(output_path or input_path, writable=not dry_run)
    (transactor_spec if kind == "transactor" else cf_spec)(read)
