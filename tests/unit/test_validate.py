"""Validate first (issue 9 points 3 and 9): contradictions, regions, Datomic-era values, paths,
malformed escapes and the template's own region, all refused before any AWS call or write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from datomic_aws import checks
from datomic_aws.app.ensure_cf import ensure_cf
from datomic_aws.aws import AwsContext
from datomic_aws.config.cf import LATEST_DATOMIC_VERSION, load_cf
from datomic_aws.config.era import license_findings, removed_flag
from datomic_aws.config.transactor import load_transactor, size_bytes
from datomic_aws.deploy import read_template, template_from_text
from datomic_aws.errors import FileAccessError, InvalidInput, UsageError
from datomic_aws.properties import PropertiesText
from datomic_aws.template import build_template, cross_file_checks
from tests.unit.test_template import PIN_LINES

if TYPE_CHECKING:
    from conftest import CallRecorder

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"

DDB = "protocol=ddb\nhost=localhost\nport=4334\naws-dynamodb-table=orders\n"
CF = "aws-region=us-east-1\naws-instance-type=m7i.large\n"
# A download location of the operator's comes with the SHA-256 of its zip (issue 11).
SHA_LINE = f"datomic-zip-sha256={'ab' * 32}\n"


def write(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1"))
    return path


def transactor_problems(tmp_path: Path, text: str) -> list[tuple[str | None, str]]:
    with pytest.raises(InvalidInput) as info:
        load_transactor(write(tmp_path, text, "transactor.properties"))
    return [(p.key, p.message) for p in info.value.problems]


def cf_problems(tmp_path: Path, text: str) -> list[tuple[str | None, str, str]]:
    with pytest.raises(InvalidInput) as info:
        load_cf(write(tmp_path, text, "cf.properties"))
    return [(p.key, p.message, p.hint) for p in info.value.problems]


# ---------------------------------------------------------------------------------------------
# contradictions between keys


def test_memory_index_threshold_above_max_is_refused(tmp_path: Path) -> None:
    text = DDB + "aws-dynamodb-region=us-east-1\nmemory-index-threshold=1g\nmemory-index-max=512m\n"
    ((key, message),) = transactor_problems(tmp_path, text)
    assert key == "memory-index-threshold"
    assert "1g is above memory-index-max 512m" in message


def test_memory_index_threshold_below_max_in_other_units_passes(tmp_path: Path) -> None:
    text = DDB + "aws-dynamodb-region=us-east-1\nmemory-index-threshold=32768k\n"
    text += "memory-index-max=1g\n"
    load_transactor(write(tmp_path, text, "transactor.properties"))
    assert size_bytes("32m") == size_bytes("32768k") == 32 * 1024 * 1024
    assert size_bytes("100") == 100


def test_aws_region_disagreeing_with_the_table_region_is_refused(tmp_path: Path) -> None:
    text = DDB + "aws-dynamodb-region=us-east-1\naws-region=eu-west-1\n"
    ((key, message),) = transactor_problems(tmp_path, text)
    assert key == "aws-region"
    assert "eu-west-1" in message and "us-east-1" in message


def test_aws_region_equal_to_the_table_region_passes(tmp_path: Path) -> None:
    text = DDB + "aws-dynamodb-region=eu-west-1\naws-region=eu-west-1\n"
    _, spec = load_transactor(write(tmp_path, text, "transactor.properties"))
    assert spec.region == "eu-west-1"


# ---------------------------------------------------------------------------------------------
# regions


@pytest.mark.parametrize("region", ["us-east-7", "eu-middle-1", "xx-north-1", "us-gov-south-9"])
def test_region_that_aws_does_not_have_is_refused_in_both_files(
    tmp_path: Path, region: str
) -> None:
    problems = transactor_problems(tmp_path, DDB + f"aws-dynamodb-region={region}\n")
    assert [k for k, _ in problems] == ["aws-dynamodb-region"]
    assert f"{region!r} is not an AWS region" in problems[0][1]
    problems_cf = cf_problems(tmp_path, CF.replace("us-east-1", region))
    assert [k for k, _, _ in problems_cf] == ["aws-region"]
    assert "e.g. us-east-1" in problems_cf[0][2]


@pytest.mark.parametrize(
    "region", ["us-east-1", "cn-north-1", "cn-northwest-1", "us-gov-west-1", "eu-central-2"]
)
def test_regions_of_every_partition_are_valid(tmp_path: Path, region: str) -> None:
    _, spec = load_cf(write(tmp_path, CF.replace("us-east-1", region), "cf.properties"))
    assert spec.region == region
    assert checks.is_known_region(region)


def test_stack_arguments_refuse_a_swapped_pair_and_bad_names() -> None:
    checks.check_stack_arguments("us-east-1", "datomic-prod")
    with pytest.raises(UsageError) as info:
        checks.check_stack_arguments("datomic-prod", "us-east-1")
    assert "REGION 'datomic-prod' is not an AWS region" in info.value.what
    assert "swap" in info.value.hint
    with pytest.raises(UsageError):
        checks.check_stack_arguments("us-east-7", "datomic-prod")
    for bad in ("1-prod", "prod_a", "a" * 129, ""):
        with pytest.raises(UsageError) as info:
            checks.check_stack_arguments("us-east-1", bad)
        assert "STACK_NAME" in info.value.what


def test_template_carries_its_region_and_a_mismatch_is_refused(tmp_path: Path) -> None:
    transactor = write(
        tmp_path, DDB + "aws-dynamodb-region=us-east-1\n" + PIN_LINES, "transactor.properties"
    )
    cf_text = (
        CF.replace("us-east-1", "eu-west-1") + "java-xmx=5734m\ndatomic-version=1.0.7556\n"
        "aws-subnet-ids=subnet-0123456789abcdef0\naws-security-group-id=sg-0123456789abcdef0\n"
    )
    cf = write(tmp_path, cf_text, "cf.properties")
    doc = build_template(load_transactor(transactor)[1], load_cf(cf)[1])
    assert doc["Metadata"]["DatomicAws"]["Region"] == "eu-west-1"
    template = template_from_text(json.dumps(doc), "cf.json")
    assert template.region == "eu-west-1"
    checks.check_template_region("eu-west-1", template.region, template.path)
    with pytest.raises(UsageError) as info:
        checks.check_template_region("us-east-1", template.region, template.path)
    assert "us-east-1" in info.value.what and "eu-west-1" in info.value.what
    # A template without the region (older, or not ours) is not refused for it.
    checks.check_template_region("us-east-1", None, "old.json")


def test_template_that_is_not_utf8_or_not_json_is_invalid_input(tmp_path: Path) -> None:
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"Description": "caf\xe9"}')
    with pytest.raises(InvalidInput) as info:
        read_template(latin)
    assert "not UTF-8" in info.value.problems[0].message
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(InvalidInput):
        read_template(broken)
    with pytest.raises(InvalidInput):
        read_template(tmp_path / "missing.json")
    weird = tmp_path / "weird.json"
    weird.write_text('{"Resources": {}, "Metadata": [], "Parameters": 3}', encoding="utf-8")
    assert read_template(weird).region is None


# ---------------------------------------------------------------------------------------------
# Datomic-era values


@pytest.mark.parametrize(
    ("flag", "instead"),
    [
        ("-XX:+UseConcMarkSweepGC", "-XX:+UseG1GC"),
        ("-XX:+UseParNewGC", "G1 is the default"),
        ("-XX:+CMSClassUnloadingEnabled", "drop it"),
        ("-XX:+UseCMSInitiatingOccupancyOnly", "drop it"),
        ("-XX:CMSInitiatingOccupancyFraction=70", "drop it"),
        ("-XX:PermSize=128m", "-XX:MaxMetaspaceSize"),
        ("-XX:MaxPermSize=256m", "-XX:MaxMetaspaceSize"),
        ("-XX:+PrintGCDateStamps", "-Xlog:gc"),
        ("-d64", "drop it"),
    ],
)
def test_jvm_flags_current_jdks_reject_are_refused_with_their_replacement(
    tmp_path: Path, flag: str, instead: str
) -> None:
    problems = cf_problems(tmp_path, CF + f"java-opts=-server {flag} -XX:MaxGCPauseMillis=50\n")
    ((key, message, hint),) = problems
    assert key == "java-opts"
    assert message.startswith(f"java-opts {flag}: ")
    assert instead in hint


def test_several_removed_flags_are_each_named(tmp_path: Path) -> None:
    problems = cf_problems(tmp_path, CF + "java-opts=-XX:+UseConcMarkSweepGC -XX:+UseParNewGC\n")
    assert len(problems) == 2


@pytest.mark.parametrize(
    "flag", ["-XX:+UseG1GC", "-XX:MaxMetaspaceSize=256m", "-XX:MaxGCPauseMillis=50", "-server"]
)
def test_current_jvm_flags_pass(flag: str) -> None:
    assert removed_flag(flag) is None


@pytest.mark.parametrize("version", ["0.8.3435", "0.9.5951", "1.0.6397"])
def test_release_before_the_free_ones_needs_a_download_url(tmp_path: Path, version: str) -> None:
    ((key, message, hint),) = cf_problems(tmp_path, CF + f"datomic-version={version}\n")
    assert key == "datomic-version"
    assert f"{version} is older than 1.0.6726" in message
    assert LATEST_DATOMIC_VERSION in hint and "datomic-download-url" in hint
    text = (
        CF
        + f"datomic-version={version}\ndatomic-download-url=https://example.com/d.zip\n"
        + SHA_LINE
    )
    _, spec = load_cf(write(tmp_path, text, "cf.properties"))
    assert spec.datomic_version == version


def test_license_key_message_depends_on_the_version() -> None:
    problems, warnings = license_findings("t", 5, None, "cf", "1.0.6397")
    assert [p.key for p in problems] == ["license-key"] and warnings == []
    assert "1.0.6397" in problems[0].message and "required" in problems[0].message
    assert license_findings("t", 5, "KEY", "cf", "1.0.6397") == ([], [])
    problems, warnings = license_findings("t", 5, "KEY", "cf", "1.0.7556")
    assert problems == [] and len(warnings) == 1 and "obsolete since" in warnings[0]
    assert license_findings("t", None, None, "cf", "1.0.7556") == ([], [])


def test_cross_file_license_key_for_an_old_release(tmp_path: Path) -> None:
    transactor = write(tmp_path, DDB + "aws-dynamodb-region=us-east-1\n", "transactor.properties")
    text = (
        CF + "datomic-version=1.0.6397\ndatomic-download-url=https://example.com/d.zip\n" + SHA_LINE
    )
    cf = write(tmp_path, text, "cf.properties")
    problems, _ = cross_file_checks(load_transactor(transactor)[1], load_cf(cf)[1])
    assert [p.key for p in problems] == ["license-key"]
    assert problems[0].file == str(transactor)


def test_heap_far_below_the_sizing_rule_is_warned_about(
    ctx: AwsContext, tmp_path: Path, recorder: CallRecorder
) -> None:
    shutil.copy(SAMPLES / "cf.properties", tmp_path / "cf.properties")
    write(tmp_path, DDB + "aws-dynamodb-region=us-east-1\n", "transactor.properties")
    cf = tmp_path / "cf.properties"
    # A heap sized for a 2 GiB type, kept after the type changed to an 8 GiB m7i.large.
    cf.write_bytes(PropertiesText.load(cf).with_values({"java-xmx": "1433m"}).text.encode())
    result = ensure_cf(ctx, cf, dry_run=True, adopt=False)
    (warning,) = [w for w in result.warnings if "java-xmx" in w]
    assert "1433m is less than half of the 5734m the sizing rule gives for m7i.large" in warning
    assert recorder.mutating == []


def test_previous_generation_type_is_refused_where_it_is_offered(
    ctx: AwsContext, tmp_path: Path, recorder: CallRecorder
) -> None:
    shutil.copy(SAMPLES / "cf.properties", tmp_path / "cf.properties")
    write(tmp_path, DDB + "aws-dynamodb-region=us-east-1\n", "transactor.properties")
    cf = tmp_path / "cf.properties"
    for old in ("c1.medium", "m3.medium", "c3.large"):
        text = PropertiesText.load(cf).with_values({"aws-instance-type": old}).text
        cf.write_bytes(text.encode())
        with pytest.raises(InvalidInput) as info:
            ensure_cf(ctx, cf, dry_run=False, adopt=False)
        (problem,) = info.value.problems
        assert f"{old} is a previous-generation type" in problem.message
        assert "m7i.large" in problem.hint
    assert recorder.mutating == []


# ---------------------------------------------------------------------------------------------
# paths and escapes


def test_malformed_u_escape_names_file_line_and_key_never_the_value(tmp_path: Path) -> None:
    secret = "pa\\u12zzword-93x"
    text = DDB + f"aws-dynamodb-region=us-east-1\nsql-password={secret}\n"
    path = write(tmp_path, text, "transactor.properties")
    with pytest.raises(InvalidInput) as info:
        load_transactor(path)
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.key) == (str(path), 6, "sql-password")
    assert "malformed \\u escape" in problem.message
    shown = str(info.value)
    assert "12zz" not in shown and "word-93x" not in shown


def test_malformed_escape_on_a_continuation_line_names_the_key(tmp_path: Path) -> None:
    text = DDB + "aws-dynamodb-region=us-east-1\nsql-password=abc\\\n   d\\u00\n"
    path = write(tmp_path, text, "transactor.properties")
    with pytest.raises(InvalidInput) as info:
        load_transactor(path)
    (problem,) = info.value.problems
    assert (problem.line, problem.key) == (7, "sql-password")


def test_paths_missing_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        checks.check_input(tmp_path / "nope.properties")
    with pytest.raises(InvalidInput) as info:
        checks.check_input(tmp_path / "no-folder" / "x.properties")
    assert "does not exist" in info.value.problems[0].message
    with pytest.raises(InvalidInput):
        checks.check_input(tmp_path)
    with pytest.raises(InvalidInput):
        checks.check_output(tmp_path / "no-folder" / "out.properties")
    with pytest.raises(InvalidInput):
        checks.check_output(tmp_path)
    with pytest.raises(InvalidInput):
        checks.check_apply_folder(tmp_path / "no-folder")
    with pytest.raises(InvalidInput) as info:
        checks.check_apply_folder(tmp_path)
    assert [p.message for p in info.value.problems] == ["missing", "missing"]
    checks.check_output(tmp_path / "new.properties")


def test_environment_errors_are_exit_1() -> None:
    assert FileAccessError("x").exit_code == 1
    assert InvalidInput([]).exit_code == 2


def test_ensure_transactor_words_the_license_warning_for_the_sibling_cf_version(
    ctx: AwsContext, tmp_path: Path
) -> None:
    from datomic_aws.app.ensure_transactor import ensure_transactor

    transactor = write(
        tmp_path, DDB + "aws-dynamodb-region=us-east-1\nlicense-key=K\n", "transactor.properties"
    )
    alone = ensure_transactor(ctx, transactor, dry_run=True)
    assert [w for w in alone.warnings if "license-key is obsolete" in w]
    text = (
        CF + "datomic-version=1.0.6397\ndatomic-download-url=https://example.com/d.zip\n" + SHA_LINE
    )
    write(tmp_path, text, "cf.properties")
    old_release = ensure_transactor(ctx, transactor, dry_run=True)
    assert not [w for w in old_release.warnings if "license-key" in w]
