"""The files the tool writes stay the operator's: no symlink followed where someone else could have
planted it, no temporary file (which may hold every secret) left behind by a killed run, owner,
group and mode kept on rewrite, new files without a secret following the umask.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from datomic_aws.checks import check_output
from datomic_aws.errors import InvalidInput
from datomic_aws.properties import atomic_write, remove_stale_temps, write_if_changed

REPO = Path(__file__).resolve().parents[2]
SECRET = "PLANTED-TEMP-SECRET-61c2"
TEXT = "protocol=ddb\naws-transactor-role=datomic-x-transactor\n"


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_text("precious\n")
    path.chmod(0o644)
    return path


def sticky_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o1777)
    return folder


@pytest.mark.parametrize("mode", [0o1777, 0o777, 0o1755])
def test_output_link_in_a_shared_folder_is_refused(tmp_path: Path, mode: int) -> None:
    target = victim(tmp_path)
    folder = sticky_folder(tmp_path)
    folder.chmod(mode)
    link = folder / "transactor.properties"
    link.symlink_to(target)
    for attempt in (
        lambda: check_output(link),
        lambda: check_output(link, writable=False),
        lambda: write_if_changed(link, TEXT, dry_run=False),
        lambda: atomic_write(link, TEXT),
    ):
        with pytest.raises(InvalidInput) as err:
            attempt()
        assert err.value.exit_code == 2
        assert str(link) in str(err.value) and "symbolic link" in str(err.value)
    assert target.read_text() == "precious\n"
    assert link.is_symlink()


@pytest.mark.skipif(os.geteuid() != 0, reason="a link owned by another user needs root")
def test_output_link_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    target = victim(tmp_path)
    folder = tmp_path / "private"
    folder.mkdir(mode=0o755)
    link = folder / "cf.json"
    link.symlink_to(target)
    os.lchown(link, 4242, 4242)
    with pytest.raises(InvalidInput, match="symbolic link"):
        write_if_changed(link, "{}\n", dry_run=False)
    assert target.read_text() == "precious\n"


def test_own_link_in_a_private_folder_is_still_followed(tmp_path: Path) -> None:
    target = victim(tmp_path)
    folder = tmp_path / "private"
    folder.mkdir(mode=0o755)
    link = folder / "transactor.properties"
    link.symlink_to(target)
    write_if_changed(link, TEXT, dry_run=False)
    assert link.is_symlink() and target.read_text() == TEXT


def killed_writer(folder: Path, name: str) -> Path:
    """A process that starts atomic_write's temporary file, writes a secret in it, and is killed
    (SIGKILL: no cleanup runs) before the rename."""
    code = (
        "import os, signal, sys, tempfile\n"
        "fd, tmp = tempfile.mkstemp(prefix=f'.{sys.argv[2]}.', suffix='.tmp', dir=sys.argv[1])\n"
        f"os.write(fd, b'sql-password={SECRET}\\n')\n"
        "print(tmp, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(folder), name], capture_output=True, text=True
    )
    assert proc.returncode == -signal.SIGKILL
    left = Path(proc.stdout.strip())
    assert left.exists() and SECRET in left.read_text()
    return left


def test_temp_left_by_a_kill_is_removed_by_the_next_run(tmp_path: Path) -> None:
    path = tmp_path / "transactor.properties"
    path.write_text(TEXT)
    left = killed_writer(tmp_path, path.name)
    write_if_changed(path, TEXT, dry_run=True)
    assert left.exists(), "a dry run writes (and removes) nothing"
    change = write_if_changed(path, TEXT, dry_run=False)
    assert not change.written and not left.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["transactor.properties"]


def test_stale_temp_that_is_a_link_is_removed_not_followed(tmp_path: Path) -> None:
    target = victim(tmp_path)
    folder = tmp_path / "env"
    folder.mkdir()
    planted = folder / ".cf.json.abc123xy.tmp"
    planted.symlink_to(target)
    unrelated = folder / ".other.json.abc123xy.tmp"
    unrelated.write_text("not ours to judge\n")
    assert remove_stale_temps(folder / "cf.json") == [str(planted)]
    assert not planted.is_symlink() and target.read_text() == "precious\n"
    assert unrelated.exists()


def test_aws_gitignore_covers_the_temp_files_and_the_lock(tmp_path: Path) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    (repo / "aws" / "prod").mkdir(parents=True)
    shutil.copy(REPO / "aws" / ".gitignore", repo / "aws" / ".gitignore")
    subprocess.run([git, "init", "-q", str(repo)], check=True)
    for name in (
        ".transactor.properties.k2j_9abc.tmp",
        ".cf.json.x1y2z3w4.tmp",
        ".datomic-aws.lock",
    ):
        check = subprocess.run(
            [git, "-C", str(repo), "check-ignore", "-q", f"aws/prod/{name}"], check=False
        )
        assert check.returncode == 0, name
    kept = subprocess.run(
        [git, "-C", str(repo), "check-ignore", "-q", "aws/prod/cf.properties"], check=False
    )
    assert kept.returncode == 1


def test_rewrite_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "cf.properties"
    path.write_text("aws-vpc-id=\n")
    path.chmod(0o640)
    write_if_changed(path, "aws-vpc-id=vpc-1\n", dry_run=False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_rewrite_keeps_owner_and_group(tmp_path: Path) -> None:
    path = tmp_path / "cf.properties"
    path.write_text("aws-vpc-id=\n")
    path.chmod(0o664)
    os.chown(path, 4242, 4343)
    write_if_changed(path, "aws-vpc-id=vpc-1\n", dry_run=False)
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4242, 4343, 0o664)
    assert path.read_text() == "aws-vpc-id=vpc-1\n"


@pytest.mark.usefixtures("umask_022")
@pytest.mark.parametrize(
    ("name", "text", "mode"),
    [
        ("cf.json", '{\n  "Resources": {}\n}\n', 0o644),
        ("cf.properties", "aws-vpc-id=vpc-1\n", 0o644),
        ("t.properties", "sql-password=x\n", 0o600),
        ("u.properties", "sql-url=jdbc:postgresql://u:p@db/x\n", 0o600),
        ("v.properties", "metrics-api-key=k\n", 0o600),
    ],
)
def test_new_file_follows_the_umask_unless_it_holds_a_secret(
    tmp_path: Path, name: str, text: str, mode: int
) -> None:
    path = tmp_path / name
    write_if_changed(path, text, dry_run=False)
    assert stat.S_IMODE(path.stat().st_mode) == mode
