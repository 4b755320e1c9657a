"""The advisory folder lock: one run waits for another, then gives up after its timeout."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from datomic_aws.errors import LockedError
from datomic_aws.locking import LOCK_NAME, folder_lock


def _hold(folder: str, seconds: float, ready: Any) -> None:
    with folder_lock([folder], timeout=5):
        ready.set()
        time.sleep(seconds)


def test_second_holder_waits_then_proceeds(tmp_path: Path) -> None:
    ready = multiprocessing.Event()
    other = multiprocessing.Process(target=_hold, args=(str(tmp_path), 0.6, ready))
    other.start()
    assert ready.wait(10)
    said: list[str] = []
    start = time.monotonic()
    with folder_lock([tmp_path], timeout=10, on_wait=said.append, poll=0.05):
        waited = time.monotonic() - start
    other.join(10)
    assert waited >= 0.3
    assert len(said) == 1
    assert said[0].startswith(f"waiting for another datomic-aws run (pid {other.pid})")


def test_timeout_refuses_naming_the_holder(tmp_path: Path) -> None:
    ready = multiprocessing.Event()
    other = multiprocessing.Process(target=_hold, args=(str(tmp_path), 2.0, ready))
    other.start()
    assert ready.wait(10)
    try:
        with pytest.raises(LockedError) as err, folder_lock([tmp_path], timeout=0.2, poll=0.05):
            pass
        assert f"pid {other.pid}" in str(err.value)
        assert "--lock-timeout" in str(err.value)
    finally:
        other.join(10)


def test_lock_is_released_and_reusable_in_process(tmp_path: Path) -> None:
    with folder_lock([tmp_path, tmp_path], timeout=0):
        assert (tmp_path / LOCK_NAME).read_text().strip().isdigit()
    with folder_lock([tmp_path], timeout=0):
        pass
    assert (tmp_path / LOCK_NAME).read_text() == ""


def test_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    from datomic_aws.errors import InvalidInput

    target = tmp_path / "victim"
    target.write_text("precious\n")
    folder = tmp_path / "env"
    folder.mkdir()
    (folder / LOCK_NAME).symlink_to(target)
    with (
        pytest.raises(InvalidInput, match="symbolic link") as err,
        folder_lock([folder], timeout=0),
    ):
        pass
    assert err.value.exit_code == 2 and str(folder / LOCK_NAME) in str(err.value)
    assert target.read_text() == "precious\n"
    dangling = tmp_path / "env2"
    dangling.mkdir()
    (dangling / LOCK_NAME).symlink_to(tmp_path / "would-be-created")
    with pytest.raises(InvalidInput), folder_lock([dangling], timeout=0):
        pass
    assert not (tmp_path / "would-be-created").exists()
