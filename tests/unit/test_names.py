"""names.py: derived names never collide between two systems, and clean system names keep the
names existing deployments already have."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datomic_aws import names

ACCOUNT = "123456789012"
REGION = "us-east-1"

# Every name derived from a system name, with the service's charset, length limit and whether the
# service compares names without regard to case (IAM, EC2 security groups: two names that differ
# only in case are one name to AWS).
DERIVED: dict[str, tuple[Callable[[str], str], str, int, bool]] = {
    "stack": (names.stack, r"[A-Za-z][-A-Za-z0-9]*", 128, False),
    "transactor role": (names.transactor_role, r"[\w+=,.@-]+", 64, True),
    "peer role": (names.peer_role, r"[\w+=,.@-]+", 64, True),
    "log bucket": (
        lambda s: names.log_bucket(s, ACCOUNT, REGION),
        r"[a-z0-9][a-z0-9.-]*[a-z0-9]",
        63,
        False,
    ),
    "security group": (
        names.security_group,
        r"[A-Za-z0-9 ._:/()#,@\[\]+=&;{}!$*-]+",
        255,
        True,
    ),
    "ssm parameter": (names.ssm_parameter, r"/[A-Za-z0-9_./-]+", 1011, False),
    "auto scaling group": (names.autoscaling_group, r"[\x20-\x7e]+", 255, False),
}

# A DynamoDB table name, the usual system name: 3-255 of [A-Za-z0-9_.-].
TABLE_NAMES = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-",
    min_size=1,
    max_size=255,
)
# A file stem (another protocol's system name) can be anything.
ANY_NAMES = st.text(min_size=1, max_size=300)


def _key(kind: str, name: str) -> str:
    return name.lower() if DERIVED[kind][3] else name


@pytest.mark.parametrize("system", ["orders", "my-datomic-system", "prod-a", "a", "x" * 20])
def test_a_name_that_needs_no_cleaning_keeps_todays_names(system: str) -> None:
    assert names.stack(system) == f"datomic-{system}"
    assert names.transactor_role(system) == f"datomic-{system}-transactor"
    assert names.peer_role(system) == f"datomic-{system}-peer"
    assert names.security_group(system) == f"datomic-{system}-transactor"
    assert names.ssm_parameter(system) == f"/datomic/{system}/transactor.properties"
    assert names.autoscaling_group(system) == f"datomic-{system}-transactors"
    assert names.log_bucket(system, ACCOUNT, REGION) == f"datomic-{system}-logs-{ACCOUNT}-{REGION}"


def test_dots_and_underscores_are_kept_where_the_service_allows_them() -> None:
    for system in ("prod.a", "prod_a"):
        assert names.transactor_role(system) == f"datomic-{system}-transactor"
        assert names.security_group(system) == f"datomic-{system}-transactor"
        assert names.ssm_parameter(system) == f"/datomic/{system}/transactor.properties"
        assert names.autoscaling_group(system) == f"datomic-{system}-transactors"


def test_prod_dot_a_and_prod_underscore_a_get_their_own_stack_and_bucket() -> None:
    dotted, underscored = names.stack("prod.a"), names.stack("prod_a")
    assert dotted != underscored
    assert dotted.startswith("datomic-prod-a-") and underscored.startswith("datomic-prod-a-")
    assert names.stack("prod-a") == "datomic-prod-a"
    buckets = {names.log_bucket(s, ACCOUNT, REGION) for s in ("prod.a", "prod_a", "prod-a")}
    assert len(buckets) == 3


def test_systems_differing_only_in_case_get_distinct_iam_and_group_names() -> None:
    for kind in ("transactor role", "peer role", "security group", "log bucket"):
        fn = DERIVED[kind][0]
        assert _key(kind, fn("Orders")) != _key(kind, fn("orders")), kind
    # Case-sensitive services keep the name as it is.
    assert names.stack("Orders") == "datomic-Orders"
    assert names.ssm_parameter("Orders") == "/datomic/Orders/transactor.properties"


def _check_pair(a: str, b: str) -> None:
    for kind, (fn, charset, limit, _) in DERIVED.items():
        name_a, name_b = fn(a), fn(b)
        for name in (name_a, name_b):
            assert re.fullmatch(charset, name), (kind, name)
            assert len(name) <= limit, (kind, name)
        if a != b:
            assert _key(kind, name_a) != _key(kind, name_b), (kind, a, b, name_a)


@settings(max_examples=300, deadline=None)
@given(TABLE_NAMES, TABLE_NAMES)
def test_two_table_names_never_share_a_derived_name(a: str, b: str) -> None:
    _check_pair(a, b)


@settings(max_examples=200, deadline=None)
@given(ANY_NAMES, ANY_NAMES)
def test_two_arbitrary_system_names_never_share_a_derived_name(a: str, b: str) -> None:
    _check_pair(a, b)


@settings(max_examples=200, deadline=None)
@given(TABLE_NAMES, st.sampled_from(["_", ".", "-", "__", "._"]))
def test_separators_alone_never_make_two_systems_one(stem: str, sep: str) -> None:
    # The reported case, generalised: names that differ only in their separators.
    a, b = f"{stem}{sep}x", f"{stem}-x"
    if a != b:
        _check_pair(a, b)


@pytest.mark.parametrize("system", ["orders", "prod.a", "Prod_A", "x" * 300, "日本"])
def test_names_are_deterministic(system: str) -> None:
    for fn, *_ in DERIVED.values():
        assert fn(system) == fn(system)


def test_the_names_other_modules_used_to_build_come_from_here() -> None:
    # The values existing deployments carry: changing one would orphan what they named.
    assert names.stack_or_default(None, "orders") == "datomic-orders"
    assert names.stack_or_default("mine", "orders") == "mine"
    assert names.instance("orders") == "datomic-orders-transactor"
    assert names.runtime_policy("orders") == "datomic-orders-transactor-runtime"
    assert names.log_policy("b") == "b-transactor-logs"
    assert names.stack_lock("datomic-orders") == "/datomic-aws/locks/datomic-orders"
    assert names.TEMPLATE_BODY_LIMIT == 51_200
    assert names.TAG_MAX_BEFORE_REPLACE == "datomic-aws:max-size-before-replace"
    assert names.TAG_MIN_BEFORE_REPLACE == "datomic-aws:min-size-before-replace"
    assert names.TAG_SUSPENDED_FOR_REPLACE == "datomic-aws:suspended-for-replace"
