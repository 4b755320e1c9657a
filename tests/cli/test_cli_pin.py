"""The pinned configuration through the real process, against a moto server (issue 10, Deliver 2).

ensure-transactor records, beside the SSM parameter version it stored the configuration as
(`datomic-aws-config-version`), the keyed digest of that configuration
(`datomic-aws-config-digest`). create-cf-template refuses, with exit 2 and nothing written, a file
whose configuration was edited since (the template would pin the old version, whose digest the
instance then refuses), and says to run ensure-transactor first; after it, the template pins the
new version. A file from the previous release (a version, no recorded digest) is not refused: it
cannot be checked, and the next ensure-transactor records the digest.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.cli.test_cli_cf import CREDENTIALS, UNREACHABLE, _edit, _ensured, _values

OFFLINE = {"env": UNREACHABLE, "unset": CREDENTIALS}


def _pin(template: Path) -> str:
    doc = json.loads(template.read_text(encoding="utf-8"))
    user_data = doc["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]
    return str(user_data["Fn::Base64"]["Fn::Sub"][1]["ConfigPin"])


def test_an_edited_configuration_is_refused_until_ensure_transactor_stores_it(
    cli: Any, tmp_path: Path
) -> None:
    transactor, cf = _ensured(cli, tmp_path)
    assert cli("ensure-cf", str(cf)).code == 0
    out = tmp_path / "cf.json"
    files = (str(transactor), str(cf), str(out))
    first = cli("create-cf-template", *files, **OFFLINE)
    assert first.code == 0, first.stderr
    recorded = _values(transactor)
    assert recorded["datomic-aws-config-version"] == "1"
    assert re.fullmatch(r"[0-9a-f]{64}", recorded["datomic-aws-config-digest"])
    # The recorded digest is the one the template pins: keyed, it reveals nothing new.
    assert _pin(out) == f"1:{recorded['datomic-aws-config-digest']}"
    template_before = out.read_bytes()

    # The operator edits the configuration and skips ensure-transactor.
    _edit(transactor, **{"memory-index-max=512m": "memory-index-max=600m"})
    edited = transactor.read_bytes()
    for dry in ((), ("--dry-run",)):
        refused = cli("create-cf-template", *dry, *files, **OFFLINE)
        assert refused.code == 2, refused.stderr
        assert "the configuration changed since ensure-transactor stored it as version 1" in (
            refused.stderr
        )
        assert f"run datomic-aws ensure-transactor {transactor} first" in refused.stderr
        assert out.read_bytes() == template_before
        assert transactor.read_bytes() == edited

    stored = cli("--output", "json", "ensure-transactor", str(transactor))
    assert stored.code == 0, stored.stderr
    now = _values(transactor)
    assert now["datomic-aws-config-version"] == "2"
    assert now["datomic-aws-config-digest"] != recorded["datomic-aws-config-digest"]
    written = cli("create-cf-template", *files, **OFFLINE)
    assert written.code == 0, written.stderr
    assert _pin(out) == f"2:{now['datomic-aws-config-digest']}"

    # Idempotence: a rerun of each changes nothing, no mutating call, the files byte-identical.
    transactor_bytes, template_bytes = transactor.read_bytes(), out.read_bytes()
    again = cli("--output", "json", "ensure-transactor", str(transactor))
    assert again.code == 0, again.stderr
    assert again.json["changed"] is False
    assert again.json["aws_calls"]["mutating"] == 0, again.json["aws_calls"]
    rendered = cli("--output", "json", "create-cf-template", *files, **OFFLINE)
    assert rendered.code == 0, rendered.stderr
    assert rendered.json["changed"] is False
    assert (transactor.read_bytes(), out.read_bytes()) == (transactor_bytes, template_bytes)


def test_a_file_of_the_previous_release_is_not_refused_and_gets_its_digest(
    cli: Any, tmp_path: Path
) -> None:
    """A version and no recorded digest (written before it existed): create-cf-template cannot
    check it and renders as before; the next ensure-transactor records the digest, changing
    nothing in AWS."""
    transactor, cf = _ensured(cli, tmp_path)
    assert cli("ensure-cf", str(cf)).code == 0
    text = transactor.read_text(encoding="latin-1")
    old = re.sub(r"datomic-aws-config-digest=[0-9a-f]{64}\n", "", text)
    assert old != text
    transactor.write_text(old, encoding="latin-1")
    out = tmp_path / "cf.json"
    rendered = cli("create-cf-template", str(transactor), str(cf), str(out), **OFFLINE)
    assert rendered.code == 0, rendered.stderr

    upgrade = cli("--output", "json", "ensure-transactor", str(transactor))
    assert upgrade.code == 0, upgrade.stderr
    assert upgrade.json["aws_calls"]["mutating"] == 0, upgrade.json["aws_calls"]
    assert transactor.read_text(encoding="latin-1") == text
    again = cli("--output", "json", "ensure-transactor", str(transactor))
    assert again.json["changed"] is False
    assert transactor.read_text(encoding="latin-1") == text
