"""create-cf-template: the two files in, the template out (the file edges of template.py).

Owns the command's checks of its paths, loading both files once, rendering once and writing the
output only when its bytes change. It must not call AWS.
"""

from __future__ import annotations

from pathlib import Path

from datomic_aws.app.inputs import Inputs, load_pair
from datomic_aws.changes import Result
from datomic_aws.properties import write_if_changed
from datomic_aws.template import Rendered, render_template


def check_template_paths(
    transactor_path: str | Path, cf_path: str | Path, output_path: str | Path, *, dry_run: bool
) -> Inputs:
    """Before the folder lock: the paths, then both files (every problem of both)."""
    from datomic_aws.checks import check_output, check_output_distinct, check_properties_input

    check_output_distinct(str(output_path), [str(transactor_path), str(cf_path)])
    read = check_properties_input(transactor_path), check_properties_input(cf_path)
    check_output(str(output_path), writable=not dry_run)
    return load_pair(transactor_path, cf_path, read=read)


def template_result(rendered: Rendered, output_path: str | Path, *, dry_run: bool) -> Result:
    """The rendered template written to OUTPUT when its bytes change (the diff either way)."""
    result = Result("create-cf-template", dry_run=dry_run)
    result.warnings.extend(rendered.warnings)
    result.files.append(write_if_changed(output_path, rendered.text, dry_run=dry_run))
    result.extra["config_pin"] = rendered.config_pin
    result.extra["template_bytes"] = rendered.size
    return result


def create_cf_template(
    transactor_path: str | Path,
    cf_path: str | Path,
    output_path: str | Path,
    *,
    dry_run: bool,
    inputs: Inputs | None = None,
) -> Result:
    """create-cf-template: load both files (or take them as loaded and check they did not change
    since), render, write OUTPUT only when its bytes change. No AWS."""
    loaded = inputs.fresh() if inputs is not None else load_pair(transactor_path, cf_path)
    rendered = render_template(loaded.transactor, loaded.cf, where=str(output_path))
    return template_result(rendered, output_path, dry_run=dry_run)
