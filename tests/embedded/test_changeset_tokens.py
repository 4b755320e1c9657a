"""Change-set request tokens change exactly when the request does (issue 10, reference §11:
CloudFormation treats a repeated ClientToken as the same request, so a genuinely new request needs a
new one): a retry of the same request on the same stack state keeps its token, a revert A -> B -> A
gets three tokens, and repeated dry runs each get their own change set. Stubber pinned to the exact
parameters, as in tests/embedded/test_stack.py, whose harness this reuses."""

from __future__ import annotations

import json
from datetime import timedelta

from datomic_aws import names, stack
from datomic_aws.stack.changesets import request_token, stack_state
from datomic_aws.stack.document import StackTemplate
from datomic_aws.stack.read import StackInfo
from datomic_aws.stack.status import classify
from tests.embedded.test_stack import (
    CSID,
    LT_MODIFY,
    NAME,
    REGION,
    SID,
    SYSTEM,
    T0,
    Harness,
    change_set_created,
    change_set_described,
    template,
)

TAGS = names.tags(SYSTEM)


def _doc(text: str) -> StackTemplate:
    return StackTemplate(text, json.loads(text))


def _info(status: str, version: str) -> StackInfo:
    return StackInfo(NAME, SID, status, classify(status), version=version)


def _update_token(text: str, info: StackInfo) -> str:
    doc = _doc(text)
    return request_token("update", NAME, stack_state(info), doc, TAGS, doc.desired_parameters({}))


def test_a_retry_of_the_same_request_on_the_same_state_keeps_its_token() -> None:
    a = template()
    state = _info("UPDATE_COMPLETE", str(T0))
    assert _update_token(a, state) == _update_token(a, _info("UPDATE_COMPLETE", str(T0)))


def test_a_revert_a_b_a_gets_three_distinct_tokens() -> None:
    a, b = template(), template(instance_type="t3.large")
    # Each executed update moves the stack's LastUpdatedTime on.
    first = _update_token(a, _info("CREATE_COMPLETE", str(T0)))
    second = _update_token(b, _info("UPDATE_COMPLETE", str(T0 + timedelta(minutes=1))))
    third = _update_token(a, _info("UPDATE_COMPLETE", str(T0 + timedelta(minutes=2))))
    assert len({first, second, third}) == 3
    # ...and B after that revert is not the second request again either.
    fourth = _update_token(b, _info("UPDATE_COMPLETE", str(T0 + timedelta(minutes=3))))
    assert fourth not in {first, second, third}


def test_the_token_changes_with_tags_and_parameters_too() -> None:
    doc = _doc(template())
    state = stack_state(_info("UPDATE_COMPLETE", str(T0)))
    plain = request_token("update", NAME, state, doc, TAGS, {"InstanceType": "t3.small"})
    assert plain != request_token(
        "update", NAME, state, doc, {**TAGS, "team": "x"}, {"InstanceType": "t3.small"}
    )
    assert plain != request_token("update", NAME, state, doc, TAGS, {"InstanceType": "t3.large"})


def _describe_at(h: Harness, status: str, updated: object) -> None:
    """DescribeStacks with a LastUpdatedTime (the Harness's own describe has CreationTime only)."""
    body = {
        "StackName": NAME,
        "StackId": SID,
        "CreationTime": T0,
        "LastUpdatedTime": updated,
        "StackStatus": status,
        "Tags": [{"Key": k, "Value": v} for k, v in TAGS.items()],
        "EnableTerminationProtection": True,
        "Parameters": [{"ParameterKey": "InstanceType", "ParameterValue": "t3.small"}],
    }
    h.cfn.add_response("describe_stacks", {"Stacks": [body]}, {"StackName": NAME})


def _preview(h: Harness, deployed: str, new: str, updated: object) -> str:
    """One dry-run update; the ClientToken it sent (its change set was created and deleted)."""
    _describe_at(h, "UPDATE_COMPLETE", updated)
    h.get_template(deployed)
    h.resources()
    change_set_created(h, new, "preview", source={"TemplateBody": new})
    change_set_described(h, "CREATE_COMPLETE", changes=[LT_MODIFY])
    h.cfn.add_response("delete_change_set", {}, {"ChangeSetName": CSID, "StackName": SID})
    changes = stack.update_stack(
        h.ctx, REGION, NAME, new, system=SYSTEM, dry_run=True, waiting=h.waiting()
    )
    assert changes[0].changed and changes[1].resource == f"stack/{NAME}/LaunchTemplate"
    h.done()
    (sent,) = [p for op, p in h.params if op == "cloudformation:CreateChangeSet"]
    token = sent["ClientToken"]
    assert isinstance(token, str) and token.startswith("datomic-aws-preview-")
    return token


def test_repeated_dry_runs_each_get_a_change_set_of_their_own() -> None:
    """The first preview's change set is deleted; a second preview of the same request on the same
    state must not send the first one's token, or AWS answers with the deleted change set."""
    old, new = template(), template(instance_type="t3.large")
    tokens = []
    for _ in range(3):
        h = Harness(read_only=True, allowed_writes=stack.DRY_RUN_WRITES)
        tokens.append(_preview(h, old, new, T0))
    assert len(set(tokens)) == 3


def _update(h: Harness, body: str, updated: object) -> str:
    """One update whose change set turns out empty; the ClientToken it sent."""
    key = stack.template_key(NAME, body)
    _describe_at(h, "UPDATE_COMPLETE", updated)
    h.get_template(template(instance_type="t3.large"))
    h.resources()
    h.bucket_ready(key)
    change_set_created(h, body, "update", source={"TemplateURL": _url(key)})
    change_set_described(h, "FAILED", "The submitted information didn't contain changes.")
    h.cfn.add_response("delete_change_set", {}, {"ChangeSetName": CSID, "StackName": SID})
    stack.update_stack(h.ctx, REGION, NAME, body, system=SYSTEM, waiting=h.waiting())
    h.done()
    (sent,) = [p for op, p in h.params if op == "cloudformation:CreateChangeSet"]
    return str(sent["ClientToken"])


def _url(key: str) -> str:
    return stack.template_url(names.templates_bucket("111122223333", REGION), REGION, key)


def test_an_update_reads_the_stack_state_from_describe_stacks() -> None:
    """Same request, same LastUpdatedTime: a retry (same token); the stack updated meanwhile: a new
    request (new token), although the body is byte for byte the same."""
    body = template()
    first = _update(Harness(), body, T0 + timedelta(minutes=5))
    retry = _update(Harness(), body, T0 + timedelta(minutes=5))
    moved = _update(Harness(), body, T0 + timedelta(minutes=9))
    assert first == retry
    assert moved != first
