"""Minimal-diff reading, editing and atomic writing of Java `.properties` files.

Operators commit these files and review `git diff` after every run, so an edit touches only the lines
of keys whose value changed: separators, comments, blank lines, line endings and unrelated lines are
kept byte for byte; a commented `# key=` line is uncommented in place; new keys are appended; an
unchanged file is never rewritten. Files are Latin-1, as Java reads them; a leading byte-order mark
is kept and parsed past. Every edit is checked by parsing its result again: it must read as the old
entries plus the updates, else UnsafeEdit is raised and nothing is written. No AWS, no validation.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import javaproperties

from datomic_aws.changes import FileChange
from datomic_aws.errors import UnsafeEdit

ENCODING = "latin-1"
# A UTF-8 byte-order mark as the Latin-1 decoding of the file shows it, or as one character when
# the text came from elsewhere. Editors put it there; it is not part of the first key.
_BOMS = ("\xef\xbb\xbf", "\ufeff")

# A line's key part: leading blanks, then the (escaped) key up to the first unescaped separator.
_KEY_PART = re.compile(
    r"^(?P<lead>[ \t\f]*)(?P<key>(?:\\[^\r\n]|[^ \t\f=:\\\r\n])*)"
    r"(?P<sep>[ \t\f]*[=:][ \t\f]*|[ \t\f]+|)"
)
# A commented assignment `#key=` / `! key : value`; prose such as `# see the docs` never matches.
_COMMENTED = re.compile(
    r"^(?P<lead>[ \t\f]*)[#!][ \t\f]*(?P<key>[A-Za-z0-9_.\-]+)(?P<sep>[ \t\f]*[=:][ \t\f]*)"
)


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    line: int


# Java's line terminators, and only those (str.splitlines also splits on \x85, \x0c, \x1c...).
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def _split_lines(text: str) -> list[str]:
    return _LINES.findall(text)


def _line_ending(source: str) -> str:
    for eol in ("\r\n", "\n", "\r"):
        if source.endswith(eol):
            return eol
    return ""


def _continues(source: str) -> bool:
    """The element's last line ends in a line continuation (an odd number of backslashes): Java
    joins whatever line comes next to it, even past the end of a file that gains a line."""
    body = source[: len(source) - len(_line_ending(source))]
    return (len(body) - len(body.rstrip("\\"))) % 2 == 1


def escape_value(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch in " \f" and i == 0:
            out.append("\\" + ch if ch == " " else "\\f")
        elif ord(ch) > 0xFF:
            out.append("".join(f"\\u{u:04x}" for u in _utf16_units(ch)))
        else:
            out.append(ch)
    return "".join(out)


def _utf16_units(ch: str) -> list[int]:
    data = ch.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


class PropertiesText:
    """An immutable parsed properties document that can produce minimally edited copies."""

    def __init__(self, text: str, path: str = "<text>") -> None:
        self.text = text
        self.path = path
        self._bom = next((b for b in _BOMS if text.startswith(b)), "")
        self._elements = list(javaproperties.parse(text[len(self._bom) :]))
        self._lines: list[int] = []
        line = 1
        for el in self._elements:
            self._lines.append(line)
            line += el.source.count("\n") + el.source.count("\r") - el.source.count("\r\n")
        self._entries: dict[str, Entry] = {}
        self._index: dict[str, int] = {}
        for i, el in enumerate(self._elements):
            if isinstance(el, javaproperties.KeyValue):
                self._entries[el.key] = Entry(el.key, el.value, self._lines[i])
                self._index[el.key] = i

    @classmethod
    def load(cls, path: str | Path) -> PropertiesText:
        with open(path, encoding=ENCODING, newline="") as fh:
            return cls(fh.read(), str(path))

    def entries(self) -> dict[str, Entry]:
        """Keys as Java reads them: the last duplicate wins."""
        return dict(self._entries)

    def values(self) -> dict[str, str]:
        return {k: e.value for k, e in self._entries.items()}

    def get(self, key: str) -> str | None:
        entry = self._entries.get(key)
        return entry.value if entry else None

    def line_of(self, key: str) -> int | None:
        entry = self._entries.get(key)
        if entry:
            return entry.line
        commented = self._commented_index(key)
        return self._lines[commented] if commented is not None else None

    def _commented_index(self, key: str) -> int | None:
        found = None
        for i, el in enumerate(self._elements):
            if isinstance(el, javaproperties.Comment):
                m = _COMMENTED.match(el.source)
                if m and m.group("key") == key:
                    found = i
        return found

    def with_values(self, updates: Mapping[str, str]) -> PropertiesText:
        """A copy where each key has its new value, touching only the lines that must change.

        Raises UnsafeEdit when the result would not read as the old entries plus the updates."""
        edited = PropertiesText(self._edited(updates), self.path)
        expected = {**self.values(), **updates}
        found = edited.values()
        if found != expected:
            raise UnsafeEdit(
                self.path,
                sorted(
                    k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k)
                ),
            )
        return edited

    def _edited(self, updates: Mapping[str, str]) -> str:
        sources = [el.source for el in self._elements]
        appended: list[str] = []
        eol = self._dominant_eol()
        for key, value in updates.items():
            current = self._entries.get(key)
            if current is not None:
                if current.value == value:
                    continue
                i = self._index[key]
                sources[i] = self._rewrite(sources[i], key, value, eol)
                continue
            commented = self._commented_index(key)
            if commented is not None:
                m = _COMMENTED.match(sources[commented])
                assert m is not None
                ending = _line_ending(sources[commented])
                sources[commented] = (
                    f"{m.group('lead')}{javaproperties.escape(key)}{m.group('sep')}"
                    f"{escape_value(value)}{ending}"
                )
                continue
            appended.append(f"{javaproperties.escape(key)}={escape_value(value)}{eol}")
        if appended and sources:
            if not _line_ending(sources[-1]):
                sources[-1] += eol
            if not isinstance(self._elements[-1], javaproperties.Comment) and _continues(
                sources[-1]
            ):
                # A file ending in a continuation: an empty line ends the logical line (Java's
                # LineReader, reference §8) without changing its value, so the appended keys
                # stay keys instead of being swallowed into the last value. The line's own
                # ending: a "\n" after its "\r" would merge into one CRLF terminator.
                sources[-1] += _line_ending(sources[-1])
        return self._bom + "".join(sources) + "".join(appended)

    @staticmethod
    def _rewrite(source: str, key: str, value: str, eol: str) -> str:
        # The last line of a file may have no line ending; it keeps none (an append adds one).
        ending = _line_ending(source)
        m = _KEY_PART.match(source)
        lead = m.group("lead") if m else ""
        raw_key = m.group("key") if m and m.group("key") else ""
        sep = m.group("sep") if m and m.group("sep") else "="
        if not raw_key or javaproperties.unescape(raw_key) != key:
            # The key itself is continued over lines (`ke\<newline>  y=`): written on one line.
            raw_key, sep = javaproperties.escape(key), "="
        escaped = escape_value(value)
        if not sep.strip(" \t\f") and escaped[:1] in ("=", ":"):
            # After a blank separator Java skips one `=`/`:`; escape it so the value keeps it.
            escaped = "\\" + escaped
        return f"{lead}{raw_key}{sep}{escaped}{ending}"

    def _dominant_eol(self) -> str:
        crlf = self.text.count("\r\n")
        lf = self.text.count("\n") - crlf
        cr = self.text.count("\r") - crlf
        if cr > lf and cr > crlf:
            return "\r"
        return "\r\n" if crlf > lf else "\n"


def unified_diff(before: str, after: str, path: str) -> str:
    if before == after:
        return ""
    out = []
    for line in difflib.unified_diff(
        _split_lines(before),
        _split_lines(after),
        fromfile="a/" + path.lstrip("/"),
        tofile="b/" + path.lstrip("/"),
    ):
        if line.endswith(("\n", "\r")):
            out.append(line)
        else:
            # As git shows it: the diff stays one line per line even without a final newline.
            out.append(line + "\n\\ No newline at end of file\n")
    return "".join(out)


def atomic_write(path: str | Path, text: str) -> None:
    """Replace `path` with `text` (Latin-1, line endings as given), keeping the file's mode.

    A temporary file in the same folder, fsynced, then `os.replace`: a reader or a crash sees the
    old file or the new one, never half of one.
    """
    # Through a symlink (a file kept in a dotfiles repository, say) the link stays and its target
    # is replaced; os.replace on the link itself would turn it into a regular file.
    target = Path(os.path.realpath(path))
    try:
        mode: int | None = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding=ENCODING, newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def write_if_changed(output: str | Path, text: str, *, dry_run: bool) -> FileChange:
    """Write `text` to OUTPUT only when its bytes would change; the diff is against what it holds.

    A rerun that changes nothing writes nothing and keeps the mtime.
    """
    target = Path(output)
    try:
        current = PropertiesText.load(target).text
    except FileNotFoundError:
        current = ""
    diff = unified_diff(current, text, str(output))
    written = False
    if diff and not dry_run:
        atomic_write(target, text)
        written = True
    return FileChange(str(output), diff, written, text)


def write_back(
    props: PropertiesText, updates: Mapping[str, str], output: str | Path, *, dry_run: bool
) -> FileChange:
    """Apply `updates` to `props` and write OUTPUT (INPUT, or another file) when it changes."""
    return write_if_changed(output, props.with_values(updates).text, dry_run=dry_run)
