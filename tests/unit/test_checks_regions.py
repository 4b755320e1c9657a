"""The known regions come from botocore's small partitions.json: none that its endpoints.json
lists is lost, and its pseudo-regions of global endpoints are no regions."""

from __future__ import annotations

import botocore.loaders

from datomic_aws import checks


def test_every_region_of_botocores_endpoints_is_known() -> None:
    endpoints = botocore.loaders.create_loader().load_data("endpoints")
    listed = {r for p in endpoints["partitions"] for r in p.get("regions", {})}
    assert listed
    assert listed <= checks.known_regions()


def test_global_pseudo_regions_and_typos_are_not_regions() -> None:
    for name in ("aws-global", "aws-cn-global", "aws-us-gov-global", "us-east-7", ""):
        assert not checks.is_known_region(name)
