"""What the CLI's output does on a terminal: colour or not, and the lines of a wait.

Owns the colour decision (`use_color`: a terminal, no `--no-color`, no `NO_COLOR`, never JSON) and
`Terminal`, the one sink of the CLI's stderr lines: every line of a wait is stamped with the time
elapsed since the command began, and on a terminal (never with `--output json`, never piped) a live
line under them keeps the elapsed time and the last wait line current, redrawn every second.

It never prints and never imports click: it writes through the function cli.py gives it.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Mapping

from datomic_aws.app.signals import background_thread

_CLEAR = "\r\x1b[K"  # back to the start of the line, and erase it


def use_color(*, is_tty: bool, output: str, no_color: bool, env: Mapping[str, str]) -> bool:
    """Colour only on a terminal, never in JSON; `--no-color` or a non-empty NO_COLOR
    (https://no-color.org) turns it off, and so does TERM=dumb."""
    if no_color or output == "json" or not is_tty:
        return False
    return not env.get("NO_COLOR") and env.get("TERM") != "dumb"


def live_progress(*, is_tty: bool, output: str, env: Mapping[str, str]) -> bool:
    """The live line is drawn only on a terminal that can erase a line, never with JSON."""
    return is_tty and output != "json" and env.get("TERM") != "dumb"


def elapsed(seconds: float) -> str:
    """`m:ss`, or `h:mm:ss` past an hour."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _columns() -> int:
    return shutil.get_terminal_size((80, 24)).columns


class Terminal:
    """The stderr lines of one command (wait lines stamped `[m:ss]`, the live line) and whether
    its stdout is coloured. Until `start`, lines are written plainly."""

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        live: bool = False,
        color: bool = False,
        clock: Callable[[], float] = time.monotonic,
        columns: Callable[[], int] = _columns,
        tick: float = 1.0,
    ) -> None:
        self._write = write
        self._clock = clock
        self._columns = columns
        self._tick = tick
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self.start(live=live, color=color)

    def start(self, *, live: bool, color: bool) -> None:
        """A command begins: the elapsed time counts from now (a previous ticker stops)."""
        self._stop.set()
        self.live = live
        self.color = color
        self._start = self._clock()
        self._last = ""  # the last wait line: the live line repeats it
        self._shown = False  # the live line is on the screen
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def start_for(
        self, output: str, *, no_color: bool, tty: tuple[bool, bool], env: Mapping[str, str]
    ) -> None:
        """Start for the global options; `tty`: whether stdout, stderr are terminals."""
        color = use_color(is_tty=tty[0], output=output, no_color=no_color, env=env)
        self.start(live=live_progress(is_tty=tty[1], output=output, env=env), color=color)

    def elapsed(self) -> str:
        return elapsed(self._clock() - self._start)

    def wait_line(self, line: str) -> None:
        """A line of a wait (a stack event, a replacement step, a lock being waited for)."""
        with self._lock:
            self._clear()
            self._write(f"[{self.elapsed()}] {line}\n")
            self._last = line.strip()
            if self.live and not self._stop.is_set():
                self._draw()
                self._start_ticker()

    def line(self, text: str, write: Callable[[str], None] | None = None) -> None:
        """Any other line, for stderr (or through `write`, for stdout); the live line, if any,
        stays under it."""
        with self._lock:
            shown = self._shown
            self._clear()
            (write or self._write)(f"{text}\n")
            if shown:
                self._draw()

    def live_text(self) -> str:
        """The live line: elapsed time and the last wait line, cut to the terminal's width."""
        text = f"... {self.elapsed()} elapsed | {self._last}"
        width = max(20, self._columns() - 1)
        return text if len(text) <= width else text[: width - 3] + "..."

    def close(self) -> None:
        """Stop redrawing and erase the live line (the command's output follows)."""
        self._stop.set()
        with self._lock:
            self._clear()

    def _draw(self) -> None:
        self._write(_CLEAR + self.live_text())
        self._shown = True

    def _clear(self) -> None:
        if self._shown:
            self._write(_CLEAR)
            self._shown = False

    def _start_ticker(self) -> None:
        if self._ticker is None:
            stop = self._stop
            self._ticker = background_thread(self._run, stop)
            self._ticker.start()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self._tick):
            with self._lock:
                if self._shown and not stop.is_set():
                    self._draw()
