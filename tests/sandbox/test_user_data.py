"""The emulated transactors read the constants of the rendered boot script (the shared user data
layout: one `readonly NAME='value'` line per constant)."""

from __future__ import annotations

from pathlib import Path

from datomic_aws import names, template, user_data
from datomic_aws.config.cf import load_cf
from datomic_aws.config.transactor import load_transactor
from datomic_aws.sandbox.transactors import parse_user_data
from tests.unit.test_template import files


def test_the_rendered_boot_script_names_what_a_transactor_needs(tmp_path: Path) -> None:
    t, c, _ = files(tmp_path)
    transactor, cf = load_transactor(t)[1], load_cf(c)[1]
    constants = parse_user_data(user_data.render_boot_script(transactor, cf))
    assert constants["SYSTEM"] == transactor.system
    assert constants["CONFIG_REGION"] == transactor.region
    assert constants["SSM_PARAMETER"] == names.ssm_parameter(transactor.system)
    assert constants["GROUP_NAME"] == names.autoscaling_group(transactor.system)
    assert constants["HOOK_NAME"] == template.LAUNCH_HOOK_NAME


def test_bash_quoting_is_undone() -> None:
    text = "x\nreadonly SYSTEM='it'\"'\"'s'\nreadonly EMPTY=''\n  readonly NOT='indented'\n"
    assert parse_user_data(text) == {"SYSTEM": "it's", "EMPTY": ""}
