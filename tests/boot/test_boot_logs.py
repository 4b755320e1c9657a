"""The log-shipping step of the boot script (aws-log-group-retention-days), run in the fake Amazon
Linux (tests/boot/fake_al.py): the CloudWatch agent is installed from the Amazon Linux repository,
configured to ship the boot log and the transactor's log folder to the stack's log group, and
started; without the key the script has no such step; a failing agent leaves the boot going.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from datomic_aws import names
from datomic_aws.config.cf import load_cf
from datomic_aws.config.transactor import effective_config, load_transactor
from datomic_aws.user_data import render_boot_script
from tests.boot.fake_al import FakeAmazonLinux, datomic_zip
from tests.boot.test_boot_script import CF, FAST, PARAMETER, VERSION, lifecycle_call
from tests.unit.test_template import PIN_LINES

AGENT_CTL = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"
AGENT_CONFIG = "/opt/aws/amazon-cloudwatch-agent/etc/datomic-aws-logs.json"
LOG_KEY = "aws-log-group-retention-days=30\n"


def script(
    tmp_path: Path, release: bytes, cf_extra: str, transactor_extra: str = ""
) -> tuple[str, str]:
    folder = tmp_path / "files"
    folder.mkdir(parents=True)
    (folder / "transactor.properties").write_text(PARAMETER + transactor_extra + PIN_LINES)
    sha = hashlib.sha256(release).hexdigest()
    (folder / "cf.properties").write_text(CF + f"datomic-zip-sha256={sha}\n" + cf_extra)
    transactor = load_transactor(folder / "transactor.properties")[1]
    cf = load_cf(folder / "cf.properties")[1]
    return render_boot_script(transactor, cf, FAST), effective_config(transactor.values)


def box_of(tmp_path: Path, cf_extra: str, transactor_extra: str = "") -> FakeAmazonLinux:
    release = datomic_zip(VERSION)
    text, value = script(tmp_path, release, cf_extra, transactor_extra)
    return FakeAmazonLinux(tmp_path / "world", text, value, release)


def test_both_logs_are_shipped_to_the_log_group(tmp_path: Path) -> None:
    with box_of(tmp_path, LOG_KEY) as box:
        assert box.boot() == 0, box.printed()
        assert box.aws("autoscaling", "complete-lifecycle-action") == [lifecycle_call("CONTINUE")]
        # The agent from the Amazon Linux 2023 repository, configured, then started.
        assert ["install", "-y", "-q", "amazon-cloudwatch-agent"] in box.calls("dnf")
        config = json.loads(box.file(AGENT_CONFIG).read_text())
        assert box.calls("amazon-cloudwatch-agent-ctl") == [
            ["-a", "fetch-config", "-m", "ec2", "-s", "-c", f"file:{AGENT_CONFIG}"]
        ]
        shipped = config["logs"]["logs_collected"]["files"]["collect_list"]
        group = names.log_group("orders")
        assert {(f["file_path"], f["log_group_name"], f["log_stream_name"]) for f in shipped} == {
            ("/var/log/cloud-init-output.log", group, "{instance_id}/boot"),
            ("/opt/datomic/release/log/*.log", group, "{instance_id}/transactor"),
        }
        # The folder the agent reads is where the transactor writes its log files.
        assert box.file("/opt/datomic/release/log/transactor.log").exists()
        assert f"CloudWatch Logs group {group}" in box.file("console").read_text()


def test_without_the_key_no_agent(tmp_path: Path) -> None:
    release = datomic_zip(VERSION)
    without, _ = script(tmp_path, release, "")
    assert "amazon-cloudwatch-agent" not in without and "LOG_GROUP" not in without
    with_logs, _ = script(tmp_path / "other", release, LOG_KEY)
    assert "readonly LOG_GROUP='/datomic-aws/orders'" in with_logs
    # EC2 refuses user data over 16 KB: the step keeps the script within test_template.py's bound.
    assert len(with_logs.encode()) < 15 * 1024


def test_an_agent_that_cannot_start_leaves_the_boot_going(tmp_path: Path) -> None:
    box = box_of(tmp_path, LOG_KEY)
    (box.world / "agent-fails").touch()
    with box:
        assert box.boot() == 0, box.printed()
        assert box.lifecycle_results() == ["CONTINUE"]
        assert not box.powered_off()
        assert len(box.calls("amazon-cloudwatch-agent-ctl")) == 1
        console = box.file("console").read_text()
        assert "could not start the CloudWatch agent: the logs stay on the instance only" in console


def test_the_transactors_log_dir_is_the_folder_shipped(tmp_path: Path) -> None:
    """A log-dir of the transactor file (relative: in the release) is where the agent reads."""
    with box_of(tmp_path, LOG_KEY, "log-dir=tx-logs\n") as box:
        assert box.boot() == 0, box.printed()
        config = json.loads(box.file(AGENT_CONFIG).read_text())
        shipped = config["logs"]["logs_collected"]["files"]["collect_list"]
        assert [f["file_path"] for f in shipped] == [
            "/var/log/cloud-init-output.log",
            "/opt/datomic/release/tx-logs/*.log",
        ]
