"""The rendered user data, run by bash in a fake Amazon Linux (tests/boot/fake_al.py).

What moto cannot show (reference §7, §10, §11): the instance completes its launch lifecycle action
with CONTINUE once the transactor process is alive and Datomic's /health answers, for an active
and for a standby (which never binds its port); ABANDON and power-off when the transactor dies at
start or the deadline passes; the role tag kept current; the JVM options passed once; the unit
enabled; a transactor that exits takes its instance out of the group; no secret printed.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from datomic_aws import names
from datomic_aws.config.cf import load_cf
from datomic_aws.config.transactor import effective_config, load_transactor
from datomic_aws.template import LAUNCH_HOOK_NAME
from datomic_aws.user_data import BootTimings, render_boot_script
from tests.boot import fakes
from tests.boot.fake_al import INSTANCE_ID, REGION, FakeAmazonLinux, datomic_zip
from tests.unit.test_template import PIN_LINES

VERSION = "1.0.7556"
GROUP = "datomic-orders-transactors"
SECRET = "PLANTED-SECRET-3b9d1f"
TRANSACTOR_UNIT = "datomic-transactor.service"
ROLE_UNIT = "datomic-role.service"


CF = f"""datomic-system=orders
aws-region=us-east-1
aws-instance-type=m7i.large
aws-instance-monitoring=true
aws-autoscaling-group-size=2
java-xmx=5734m
java-opts=-XX:+UseG1GC -Dfake.marker=once
datomic-version={VERSION}
aws-vpc-id=vpc-0123456789abcdef0
aws-subnet-ids=subnet-0123456789abcdef0
aws-security-group-id=sg-0123456789abcdef0
aws-ingress-cidrs=172.31.0.0/16
"""

# The transactor file; `aws ssm get-parameter` returns its stored configuration, secrets included
# (with the digest's key), and the launch template pins its version (3) and keyed digest.
PARAMETER = f"""protocol=ddb
host=localhost
port=4334
aws-dynamodb-table=orders
aws-dynamodb-region=us-east-1
license-key={SECRET}
memcached-password={SECRET}-memcached
"""

FAST = BootTimings(
    ready_timeout_seconds=30, poll_seconds=0.1, heartbeat_every_seconds=1, role_poll_seconds=0.3
)


def render(
    tmp_path: Path, release: bytes, timings: BootTimings, text: str, download: str | None = None
) -> tuple[str, str]:
    """The boot script of the transactor file `text`, and the SSM value ensure-transactor stored.
    `download`: the cf file's download lines, `{sha}` standing for the SHA-256 of `release` (by
    default, datomic-zip-sha256 of it)."""
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "transactor.properties").write_text(text)
    sha = hashlib.sha256(release).hexdigest()
    lines = f"datomic-zip-sha256={sha}\n" if download is None else download.format(sha=sha)
    (folder / "cf.properties").write_text(CF + lines)
    transactor = load_transactor(folder / "transactor.properties")[1]
    cf = load_cf(folder / "cf.properties")[1]
    return render_boot_script(transactor, cf, timings), effective_config(transactor.values)


def instance(
    tmp_path: Path,
    extra: str = "",
    timings: BootTimings = FAST,
    stored: str | None = None,
    download: str | None = None,
) -> FakeAmazonLinux:
    """An instance of the launch template built for PARAMETER + extra; SSM holds `stored` at the
    pinned version (by default, that configuration); `download` as `render` says."""
    release = datomic_zip(VERSION)
    script, value = render(tmp_path, release, timings, PARAMETER + extra + PIN_LINES, download)
    return FakeAmazonLinux(tmp_path / "world", script, value if stored is None else stored, release)


def tag_call(role: str) -> list[str]:
    return [
        "ec2",
        "create-tags",
        "--region",
        REGION,
        "--resources",
        INSTANCE_ID,
        "--tags",
        f"Key={names.TAG_ROLE},Value={role}",
    ]


def lifecycle_call(result: str) -> list[str]:
    return [
        "autoscaling",
        "complete-lifecycle-action",
        "--region",
        REGION,
        "--auto-scaling-group-name",
        GROUP,
        "--lifecycle-hook-name",
        LAUNCH_HOOK_NAME,
        "--instance-id",
        INSTANCE_ID,
        "--lifecycle-action-result",
        result,
    ]


def assert_no_secret(box: FakeAmazonLinux) -> None:
    printed = box.printed()
    assert SECRET not in printed
    assert "license-key" not in printed and "memcached-password" not in printed
    # The secret did reach the transactor's configuration: the check above is not vacuous.
    assert SECRET in box.file("/etc/datomic/transactor.properties").read_text()


def test_an_active_transactor_completes_continue(tmp_path: Path) -> None:
    with instance(tmp_path) as box:
        assert box.boot() == 0, box.printed()
        assert box.aws("autoscaling", "complete-lifecycle-action") == [lifecycle_call("CONTINUE")]
        assert not box.powered_off()
        box.wait_for(lambda: bool(box.aws("ec2")), 20, "the role tag")
        assert box.aws("ec2") == [tag_call(names.ROLE_ACTIVE)]
        assert "ready" in box.file("console").read_text()
        assert (
            ":transactor/active" in box.file("/opt/datomic/release/log/transactor.log").read_text()
        )
        assert_no_secret(box)
    # The launch hook's timeout was extended while the script installed and downloaded.
    heartbeats = box.aws("autoscaling", "record-lifecycle-action-heartbeat")
    assert len(heartbeats) >= 3
    assert heartbeats[0][-6:] == [
        "--auto-scaling-group-name",
        GROUP,
        "--lifecycle-hook-name",
        LAUNCH_HOOK_NAME,
        "--instance-id",
        INSTANCE_ID,
    ]


def test_a_standby_completes_continue_without_binding_its_port(tmp_path: Path) -> None:
    with instance(tmp_path, "fake-behaviour=standby\n") as box:
        assert box.boot() == 0, box.printed()
        assert box.lifecycle_results() == ["CONTINUE"]
        assert not box.powered_off()
        box.wait_for(lambda: bool(box.aws("ec2")), 20, "the role tag")
        assert box.aws("ec2") == [tag_call(names.ROLE_STANDBY)]
        log = box.file("/opt/datomic/release/log/transactor.log").read_text()
        assert ":transactor/standby" in log and "bound port" not in log
        # Datomic logs the role to its log files, never to stdout (reference §10).
        assert "standby" not in box.journal(TRANSACTOR_UNIT)


def test_the_role_tag_follows_a_takeover_and_changes_only_with_the_role(tmp_path: Path) -> None:
    with instance(tmp_path, "fake-behaviour=standby\nfake-takeover-after-seconds=4\n") as box:
        assert box.boot() == 0, box.printed()
        box.wait_for(lambda: len(box.aws("ec2")) >= 2, 20, "the active role tag")
        # Many polls later, still one call per change.
        polls = len(box.calls("ss"))
        box.wait_for(lambda: len(box.calls("ss")) >= polls + 5, 20, "more role polls")
        assert box.aws("ec2") == [tag_call(names.ROLE_STANDBY), tag_call(names.ROLE_ACTIVE)]


def test_a_transactor_that_dies_at_start_is_abandoned_and_powered_off(tmp_path: Path) -> None:
    with instance(tmp_path, "fake-behaviour=die\n") as box:
        assert box.boot() == 1
        assert box.lifecycle_results() == ["ABANDON"]
        assert box.powered_off()
        assert "the transactor exited before it was ready" in box.file("console").read_text()
        # The unit's ExecStopPost takes the instance out of the group as well.
        box.wait_for(lambda: bool(box.aws("autoscaling", "set-instance-health")), 20, "leave")
        assert box.aws("ec2") == []
        assert_no_secret(box)


def test_no_answer_from_health_is_abandoned_at_the_deadline(tmp_path: Path) -> None:
    timings = BootTimings(
        ready_timeout_seconds=4, poll_seconds=0.1, heartbeat_every_seconds=1, role_poll_seconds=0.1
    )
    with instance(tmp_path, "fake-behaviour=silent\n", timings) as box:
        assert box.boot() == 1
        assert box.lifecycle_results() == ["ABANDON"]
        assert box.powered_off()
        assert "within 4s of boot" in box.file("console").read_text()
        # The deadline counts from the start of the boot, not from the transactor's start.
        assert 3 <= box.boot_seconds < 4 + 10
        assert box.aws("ec2") == []


def test_a_transactor_that_exits_later_takes_its_instance_out_of_the_group(
    tmp_path: Path,
) -> None:
    with instance(tmp_path, "fake-exit-after-seconds=3\n") as box:
        assert box.boot() == 0, box.printed()
        assert box.lifecycle_results() == ["CONTINUE"]
        box.wait_for(box.powered_off, 20, "the power-off")
        assert box.aws("autoscaling", "set-instance-health") == [
            [
                "autoscaling",
                "set-instance-health",
                "--region",
                REGION,
                "--instance-id",
                INSTANCE_ID,
                "--health-status",
                "Unhealthy",
                "--no-should-respect-grace-period",
            ]
        ]
        # The console is read as it is written (tests/boot/inside.py): give it its moment.
        said = f"marking {INSTANCE_ID} Unhealthy and powering off"
        box.wait_for(lambda: said in box.file("console").read_text(), 10, "the console")


def test_the_health_endpoint_is_added_once_and_the_unit_enabled(tmp_path: Path) -> None:
    with instance(tmp_path) as box:
        assert box.boot() == 0, box.printed()
        config = box.file("/etc/datomic/transactor.properties")
        text = config.read_text()
        assert text.endswith(
            "\nhost=10.0.1.23\nalt-host=10.0.1.23\nping-host=127.0.0.1\nping-port=9999\n"
        )
        assert config.stat().st_mode & 0o777 == 0o600
        assert box.file("/etc/datomic").stat().st_mode & 0o777 == 0o700
        wants = box.file("/etc/systemd/system/multi-user.target.wants")
        assert sorted(p.name for p in wants.iterdir()) == [ROLE_UNIT, TRANSACTOR_UNIT]
        assert ["enable", "--now", TRANSACTOR_UNIT] in box.calls("systemctl")
        # Checked where the configuration says.
        urls = {c[-1] for c in box.calls("curl") if "/health" in c[-1]}
        assert urls == {"http://127.0.0.1:9999/health"}
        # The helper root runs on the transactor's exit is not the transactor's to change.
        helper = box.file("/opt/datomic/bin/datomic-instance").stat()
        assert (box.owner("/opt/datomic/bin/datomic-instance"), helper.st_mode & 0o777) == (
            "root",
            0o755,
        )
        assert box.owner("/opt/datomic") == "root"
        # The configuration's folder is the transactor's; the release is root's (issue 11
        # Deliver 8: test_the_transactor_runs_sandboxed_on_a_read_only_release).
        assert box.owner("/opt/datomic/release/bin/transactor") == "root"
        assert box.owner("/etc/datomic") == "datomic"


def test_the_operators_health_endpoint_is_kept(tmp_path: Path) -> None:
    with instance(tmp_path, "ping-host = 127.0.0.1\nping-port: 9988\n") as box:
        assert box.boot() == 0, box.printed()
        text = box.file("/etc/datomic/transactor.properties").read_text()
        # The stored value is ensure-transactor's (`key=value`): the operator's line, not a second.
        assert "ping-port=9999" not in text and text.count("ping-host=127.0.0.1") == 1
        urls = {c[-1] for c in box.calls("curl") if "/health" in c[-1]}
        assert urls == {"http://127.0.0.1:9988/health"}
        assert box.lifecycle_results() == ["CONTINUE"]


def test_jvm_options_reach_the_jvm_once(tmp_path: Path) -> None:
    with instance(tmp_path) as box:
        assert box.boot() == 0, box.printed()
        launch = box.launch()
    # bin/transactor got the heap as arguments and JAVA_OPTS from the environment only.
    assert launch["transactor_args"] == ("-Xms5734m -Xmx5734m /etc/datomic/transactor.properties")
    assert launch["java_opts_env"] == "-XX:+UseG1GC -Dfake.marker=once"
    jvm = launch["jvm_args"]
    for option in ("-Xms5734m", "-Xmx5734m", "-XX:+UseG1GC", "-Dfake.marker=once"):
        assert jvm.count(option) == 1, jvm
    # The operator's options replace bin/transactor's defaults.
    assert "-XX:MaxGCPauseMillis=50" not in jvm


@pytest.mark.parametrize("behaviour", ["active", "die"])
def test_nothing_secret_is_printed(tmp_path: Path, behaviour: str) -> None:
    with instance(tmp_path, f"fake-behaviour={behaviour}\n") as box:
        box.boot()
        box.wait_for(lambda: bool(box.aws("ec2") or box.powered_off()), 20, "the outcome")
        assert_no_secret(box)
        console = box.file("console").read_text()
        assert re.search(r"^datomic-boot: system orders, instance " + INSTANCE_ID, console, re.M)


def test_the_pinned_version_is_read_and_its_digest_checked(tmp_path: Path) -> None:
    with instance(tmp_path) as box:
        assert box.boot() == 0, box.printed()
        (read,) = box.aws("ssm")
        assert read[read.index("--name") + 1] == "/datomic/orders/transactor.properties:3"
        assert (
            "configuration: version 3 of /datomic/orders/transactor.properties (keyed digest "
            "verified)" in box.file("console").read_text()
        )
        assert box.lifecycle_results() == ["CONTINUE"]


@pytest.mark.parametrize(
    "stored",
    [
        # Another configuration under the same key (the parameter rewritten in place).
        "memcached-password=another\n",
        # The same configuration under another key: the digest is keyed.
        f"datomic-aws-digest-secret={'7' * 64}\n",
    ],
)
def test_a_configuration_whose_keyed_digest_does_not_match_is_abandoned(
    tmp_path: Path, stored: str
) -> None:
    value = PARAMETER + PIN_LINES.splitlines()[0] + "\n" + stored
    with instance(tmp_path, stored=value.replace("host=localhost\n", "")) as box:
        assert box.boot() == 1
        assert box.lifecycle_results() == ["ABANDON"]
        assert box.powered_off()
        console = box.file("console").read_text()
        assert (
            "version 3 of /datomic/orders/transactor.properties is not the configuration of this "
            "launch template" in console
        )
        # Refused before the transactor was installed as a unit.
        assert not any("enable" in c for c in box.calls("systemctl"))
        assert SECRET not in box.printed() and "another" not in box.printed()


# ------------------------------------------------------------------------------ downloads

RELEASE_SHA = "{sha}"  # the SHA-256 of the instance's fake release (`render`)
S3_URL = "s3://acme-releases/datomic/datomic-pro-1.0.7556.zip"


def download_calls(box: FakeAmazonLinux) -> tuple[list[list[str]], list[list[str]]]:
    """The curl calls for the release (not metadata, not /health) and the `aws s3` calls."""
    curls = [c for c in box.calls("curl") if c[-1].startswith("https://")]
    return curls, box.aws("s3")


def assert_refused_before_install(box: FakeAmazonLinux, says: str) -> None:
    assert box.boot() == 1
    assert box.lifecycle_results() == ["ABANDON"]
    assert box.powered_off()
    assert says in box.file("console").read_text()
    assert not box.file("/opt/datomic/release").exists()
    assert not any("enable" in c for c in box.calls("systemctl"))


def test_the_public_release_is_fetched_over_https_only_and_verified(tmp_path: Path) -> None:
    with instance(tmp_path) as box:
        assert box.boot() == 0, box.printed()
        curls, s3 = download_calls(box)
        url = f"https://datomic-pro-downloads.s3.amazonaws.com/{VERSION}/datomic-pro-{VERSION}.zip"
        assert [c[-1] for c in curls] == [url] and s3 == []
        # HTTPS only, redirects included: curl refuses http:// (or any other scheme) anywhere.
        (call,) = curls
        assert call[call.index("--proto") + 1] == "=https"
        assert call[call.index("--proto-redir") + 1] == "=https"
        assert f"verified the SHA-256 of {url}" in box.file("console").read_text()


def test_the_default_release_is_verified_against_the_digest_the_tool_pins(
    tmp_path: Path,
) -> None:
    """No datomic-zip-sha256: the instance checks the zip against the published release's
    SHA-256 (config/era.py); the fake zip is not that release, so it is refused."""
    with instance(tmp_path, download="") as box:
        assert_refused_before_install(box, "is not the pinned one")


def test_a_custom_https_url_is_verified(tmp_path: Path) -> None:
    url = "https://downloads.example.test/datomic/datomic-pro-1.0.7556.zip"
    lines = f"datomic-download-url={url}\ndatomic-zip-sha256={RELEASE_SHA}\n"
    with instance(tmp_path, download=lines) as box:
        assert box.boot() == 0, box.printed()
        curls, _ = download_calls(box)
        assert [c[-1] for c in curls] == [url]
        assert "--proto-redir" in curls[0]
        assert f"verified the SHA-256 of {url}" in box.file("console").read_text()


def test_a_zip_whose_sha256_differs_is_refused(tmp_path: Path) -> None:
    url = "https://downloads.example.test/datomic/datomic-pro-1.0.7556.zip"
    lines = f"datomic-download-url={url}\ndatomic-zip-sha256={'0' * 64}\n"
    with instance(tmp_path, download=lines) as box:
        assert_refused_before_install(box, f"the SHA-256 of {url} is not the pinned one")


def test_an_s3_release_is_read_with_the_instance_role(tmp_path: Path) -> None:
    lines = f"datomic-download-url={S3_URL}\ndatomic-zip-sha256={RELEASE_SHA}\n"
    box = instance(tmp_path, download=lines)
    (box.world / "s3-object").write_text(S3_URL)
    with box:
        assert box.boot() == 0, box.printed()
        curls, s3 = download_calls(box)
        assert curls == []
        (call,) = s3
        # No credentials of its own: the AWS CLI's default chain, the instance profile.
        assert call[:5] == ["s3", "cp", "--only-show-errors", "--region", REGION]
        assert call[5] == S3_URL and call[6].endswith(".zip")
        assert f"verified the SHA-256 of {S3_URL}" in box.file("console").read_text()
        assert box.lifecycle_results() == ["CONTINUE"]


def test_an_s3_release_the_role_cannot_read_is_abandoned(tmp_path: Path) -> None:
    lines = f"datomic-download-url={S3_URL}\ndatomic-zip-sha256={RELEASE_SHA}\n"
    with instance(tmp_path, download=lines) as box:
        assert_refused_before_install(box, f"cannot read {S3_URL} with the instance role")
        _, s3 = download_calls(box)
        assert len(s3) == 2  # tried again once: a new grant takes a moment to apply


def test_the_digest_key_is_on_no_command_line(tmp_path: Path) -> None:
    """/proc/*/cmdline is readable by every user of the instance: the keyed digest is computed
    with the key passed through a pipe, never as an argument."""
    key = PIN_LINES.split("datomic-aws-digest-secret=", 1)[1].split("\n", 1)[0]
    with instance(tmp_path) as box:
        assert box.boot() == 0, box.printed()
        assert box.calls("python3"), "the digest was not computed by the recorded python3"
        recorded = "".join(p.read_text() for p in (box.world / "state").glob("*.calls"))
        assert key not in recorded
        assert key not in box.printed()
    # In the script, the key's variable is only assigned, given to the builtin printf, unset.
    script = (box.world / "user-data.sh").read_text()
    uses = [line.strip() for line in script.splitlines() if "digest_key" in line]
    assert uses == [
        'digest_key=$(property datomic-aws-digest-secret "$config")',
        'digest=$(printf \'%s\' "$(<"$config")" | python3 -IS -c "$hmac" 3< <(printf \'%s\' '
        '"$digest_key"))',
        "unset digest_key",
    ]
    assert "hexkey" not in script and "openssl" not in script


SANDBOX = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
}


def unit_settings(box: FakeAmazonLinux, unit: str) -> dict[str, list[str]]:
    return fakes.parse_unit(box.file(f"/etc/systemd/system/{unit}"))


def writable_by_datomic(box: FakeAmazonLinux, path: str) -> bool:
    """The datomic user (not root, in no group of root's) may write `path`: it owns it with the
    owner's write bit, or anyone may write it."""
    mode = box.file(path).stat().st_mode
    return (box.owner(path) == "datomic" and bool(mode & 0o200)) or bool(mode & 0o002)


def test_the_transactor_runs_sandboxed_on_a_read_only_release(tmp_path: Path) -> None:
    with instance(tmp_path) as box:
        assert box.boot() == 0, box.printed()
        assert box.lifecycle_results() == ["CONTINUE"]
        unit = unit_settings(box, TRANSACTOR_UNIT)
        for key, value in SANDBOX.items():
            assert unit[f"Service.{key}"] == [value], key
        # Writable: Datomic's data and log folders (data-dir, log-dir: relative to the release,
        # where bin/transactor runs), nothing else.
        release = "/opt/datomic/release"
        assert unit["Service.ReadWritePaths"] == [f"{release}/data {release}/log"]
        assert unit["Service.User"] == ["datomic"]
        # The transactor's leave-group still runs as root, outside the sandbox.
        assert unit["Service.ExecStopPost"] == ["+/opt/datomic/bin/datomic-instance leave-group"]
        tree = box.file(release)
        written = {f"{release}/data", f"{release}/log"}
        for path in [tree, *tree.rglob("*")]:
            inside = "/" + str(path.relative_to(box.world))
            if inside in written or any(inside.startswith(w + "/") for w in written):
                continue
            assert box.owner(inside) == "root", inside
            assert not writable_by_datomic(box, inside), inside
            # Readable (and the folders and programs usable) by the transactor user.
            assert path.stat().st_mode & 0o004, inside
        assert box.file(f"{release}/bin/transactor").stat().st_mode & 0o001
        for folder in sorted(written):
            assert box.owner(folder) == "datomic" and writable_by_datomic(box, folder), folder
        # The transactor did write there (the fake logs its role into log/).
        assert (box.file(f"{release}/log/transactor.log")).exists()


def test_the_operators_data_and_log_folders_are_the_writable_ones(tmp_path: Path) -> None:
    with instance(tmp_path, "data-dir=storage\nlog-dir = logs\n") as box:
        assert box.boot() == 0, box.printed()
        unit = unit_settings(box, TRANSACTOR_UNIT)
        release = "/opt/datomic/release"
        assert unit["Service.ReadWritePaths"] == [f"{release}/storage {release}/logs"]
        assert box.owner(f"{release}/storage") == "datomic"
        assert box.owner(f"{release}/logs") == "datomic"
        # Datomic's defaults are not made: the transactor does not write them.
        assert not box.file(f"{release}/data").exists()
