"""The configuration parameter without decryption (issue 11) and its pinned version (issue 10).

ensure-transactor decides "unchanged" from DescribeParameters alone (the keyed digest is in the
parameter's Description, the version beside it): Stubber pinned to the parameters AWS must
receive, so any GetParameter (decrypting or not) fails the test. The version PutParameter answers
is written back to the file, and older versions stay readable as `name:version` (reference §11),
which is what the boot script of an older launch template reads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import boto3
from botocore.stub import Stubber
from conftest import SAMPLES

from datomic_aws import names
from datomic_aws.app.ensure_transactor import ensure_transactor
from datomic_aws.aws import AwsContext
from datomic_aws.changes import Action
from datomic_aws.config.transactor import config_digest, effective_config
from datomic_aws.properties import PropertiesText
from datomic_aws.resources import ssm

REGION = "us-east-1"
SYSTEM = "orders"
NAME = names.ssm_parameter(SYSTEM)
DIGEST = "ab" * 32
SPEC = ssm.ParameterSpec(NAME, SYSTEM, "protocol=ddb\n", "config of orders", digest=DIGEST)
DESCRIBE = {"ParameterFilters": [{"Key": "Name", "Option": "Equals", "Values": [NAME]}]}


def _client() -> Any:
    return boto3.client("ssm", region_name=REGION)


def _described(digest: str, version: int) -> dict[str, Any]:
    return {
        "Parameters": [
            {
                "Name": NAME,
                "Type": "SecureString",
                "Version": version,
                "Description": f"config of orders; hmac-sha256:{digest}",
            }
        ]
    }


def test_a_converged_parameter_is_read_once_and_never_decrypted() -> None:
    client = _client()
    with Stubber(client) as stub:
        stub.add_response("describe_parameters", _described(DIGEST, 7), DESCRIBE)
        state = ssm.read_parameter_state(client, SPEC)
        stub.assert_no_pending_responses()
    assert state == ssm.ParameterState(7, DIGEST)
    plan = ssm.plan_parameter(SPEC, state, adopt=False)
    assert plan.action is Action.NOOP and plan.operations == ()
    assert ssm.planned_version(state, plan) == 7


def test_an_empty_page_with_a_token_is_followed() -> None:
    """DescribeParameters filters after paginating: a page may hold no match and a NextToken."""
    client = _client()
    with Stubber(client) as stub:
        stub.add_response("describe_parameters", {"Parameters": [], "NextToken": "t1"}, DESCRIBE)
        stub.add_response(
            "describe_parameters", _described(DIGEST, 3), {**DESCRIBE, "NextToken": "t1"}
        )
        state = ssm.read_parameter_state(client, SPEC)
        stub.assert_no_pending_responses()
    assert state == ssm.ParameterState(3, DIGEST)


def test_a_missing_parameter_is_created_as_version_one() -> None:
    client = _client()
    with Stubber(client) as stub:
        stub.add_response("describe_parameters", {"Parameters": []}, DESCRIBE)
        assert ssm.read_parameter_state(client, SPEC) is None
        stub.assert_no_pending_responses()
    plan = ssm.plan_parameter(SPEC, None, adopt=False)
    assert plan.action is Action.CREATE and ssm.planned_version(None, plan) == 1


def test_a_later_version_written_by_hand_is_drift() -> None:
    """Overwritten by hand, the Description left as it was: the latest version is not the one
    the file recorded, so it is rewritten (still without decrypting anything)."""
    client = _client()
    spec = ssm.ParameterSpec(NAME, SYSTEM, "protocol=ddb\n", "config of orders", DIGEST, 7)
    tags = [{"Key": k, "Value": v} for k, v in names.tags(SYSTEM).items()]
    with Stubber(client) as stub:
        stub.add_response("describe_parameters", _described(DIGEST, 8), DESCRIBE)
        stub.add_response(
            "list_tags_for_resource",
            {"TagList": tags},
            {"ResourceType": "Parameter", "ResourceId": NAME},
        )
        state = ssm.read_parameter_state(client, spec)
        stub.assert_no_pending_responses()
    plan = ssm.plan_parameter(spec, state, adopt=False)
    assert plan.action is Action.UPDATE and ssm.planned_version(state, plan) == 9


def test_a_changed_digest_reads_the_tags_then_writes_with_the_new_digest() -> None:
    client = _client()
    old = "cd" * 32
    tags = [{"Key": k, "Value": v} for k, v in names.tags(SYSTEM).items()]
    with Stubber(client) as stub:
        stub.add_response("describe_parameters", _described(old, 4), DESCRIBE)
        stub.add_response(
            "list_tags_for_resource",
            {"TagList": tags},
            {"ResourceType": "Parameter", "ResourceId": NAME},
        )
        state = ssm.read_parameter_state(client, SPEC)
        plan = ssm.plan_parameter(SPEC, state, adopt=False)
        assert plan.action is Action.UPDATE
        assert ssm.planned_version(state, plan) == 5
        # The change names digests only, keyed ones.
        assert plan.change().details == (f"SecureString hmac-sha256 {old[:12]} -> {DIGEST[:12]}",)
        stub.add_response(
            "put_parameter",
            {"Version": 5, "Tier": "Standard"},
            {
                "Name": NAME,
                "Value": SPEC.value,
                "Type": "SecureString",
                "Description": f"config of orders; hmac-sha256:{DIGEST}",
                "Tier": "Standard",
                "Overwrite": True,
            },
        )
        assert ssm.execute_parameter(client, plan) == 5
        stub.assert_no_pending_responses()


def test_the_version_is_written_back_and_older_versions_stay_readable(
    ctx: AwsContext, tmp_path: Path
) -> None:
    path = tmp_path / "transactor.properties"
    path.write_bytes((SAMPLES / "transactor.properties").read_bytes())
    ensure_transactor(ctx, path)
    first = PropertiesText.load(path).values()
    assert first["datomic-aws-config-version"] == "1"
    name = names.ssm_parameter(first["aws-dynamodb-table"])
    client = _client()
    (meta,) = client.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}]
    )["Parameters"]
    assert re.search(rf"hmac-sha256:{config_digest(first)}\b", meta["Description"])

    text = path.read_text("latin-1").replace("memory-index-max=", "memory-index-max=768m\n#", 1)
    path.write_text(text, "latin-1")
    result = ensure_transactor(ctx, path)
    assert [c.action for c in result.changes][-1] is Action.UPDATE
    second = PropertiesText.load(path).values()
    assert second["datomic-aws-config-version"] == "2"
    assert second["datomic-aws-digest-secret"] == first["datomic-aws-digest-secret"]
    latest = client.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    assert latest["Version"] == 2 and latest["Value"] == effective_config(second)
    # What an instance of the first launch template reads: its own configuration (reference §11).
    pinned = client.get_parameter(Name=f"{name}:1", WithDecryption=True)["Parameter"]
    assert pinned["Value"] == effective_config(first)


def test_a_create_whose_answer_was_lost_is_not_written_twice() -> None:
    """The retried create answers ParameterAlreadyExists (AWS's code and message): the version
    the first attempt made already holds this value, so it is taken, not overwritten."""
    client = _client()
    plan = ssm.plan_parameter(SPEC, None, adopt=False)
    with Stubber(client) as stub:
        stub.add_client_error(
            "put_parameter",
            "ParameterAlreadyExists",
            "The parameter already exists. To overwrite this value, set the overwrite option in "
            "the request to true.",
            400,
        )
        stub.add_response("describe_parameters", _described(DIGEST, 1), DESCRIBE)
        assert ssm.execute_parameter(client, plan) == 1
        stub.assert_no_pending_responses()
