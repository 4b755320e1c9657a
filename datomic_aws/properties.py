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
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import javaproperties

from datomic_aws.changes import FileChange
from datomic_aws.errors import InvalidInput, Problem, UnsafeEdit
from datomic_aws.secrets import MASK, has_credential, is_secret_key, mask_credentials

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
    # The key may be named in output: a plain name (letters, digits, `-`, `.`, `_`) written as a
    # setting (`key=value`, `key: value`). Not a bare word, which Java reads as a key with an empty
    # value but which may be a secret of its own (the rest of a password whose line lost its
    # trailing backslash), nor a key with escapes (`secret\:value=`), which may hold one.
    nameable: bool = True


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
                self._entries[el.key] = Entry(
                    el.key, el.value, self._lines[i], _nameable(el.source)
                )
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


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.\-]+")


def _nameable(source: str) -> bool:
    m = _KEY_PART.match(source)
    return bool(
        m and _PLAIN_KEY.fullmatch(m.group("key")) and any(c in m.group("sep") for c in "=:")
    )


def masked_lines(text: str, shown: Callable[[str], bool]) -> list[str]:
    """The physical lines of `text` (line endings kept) as output may show them: the value of a key
    `shown` refuses is MASK on its first line and every line it continues onto, a commented
    `# key=value` likewise, the key too when it is not nameable (a bare word, a key with escapes),
    and credentials inside any line are masked (secrets.mask_credentials), a shown value whose
    credential runs over lines whole.
    A text that does not parse back line for line is masked whole."""
    bom = next((b for b in _BOMS if text.startswith(b)), "")
    out: list[str] = []
    for el in javaproperties.parse(text[len(bom) :]):
        lines = _split_lines(el.source)
        key = el.key if isinstance(el, javaproperties.KeyValue) else None
        commented = _COMMENTED.match(el.source) if isinstance(el, javaproperties.Comment) else None
        if commented:
            key = javaproperties.unescape(commented.group("key"))
        # A credential continued over lines (`://user:\` then `pass@host`) is in no one line:
        # the value of a shown key that holds one across lines is masked whole.
        split = (
            len(lines) > 1 and isinstance(el, javaproperties.KeyValue) and has_credential(el.value)
        )
        if key is None or (shown(key) and not split):
            out.extend(mask_credentials(line) for line in lines)
            continue
        m = commented or (_KEY_PART.match(lines[0]) if lines else None)
        # The key is shown only when it is nameable (`Entry.nameable`): otherwise it may be the secret.
        head = lines[0][: m.end()] if m and (commented or _nameable(lines[0])) else ""
        out.extend(_masked(line, head if i == 0 else "") for i, line in enumerate(lines))
    if bom and out:
        out[0] = bom + out[0]
    if len(out) != len(_split_lines(text)):
        return [_masked(line, "") for line in _split_lines(text)]
    return out


def _masked(line: str, head: str) -> str:
    """`line` with everything after `head` (its key and separator) masked, blanks kept."""
    ending = _line_ending(line)
    rest = line[len(head) : len(line) - len(ending)]
    lead = rest[: len(rest) - len(rest.lstrip(" \t\f"))]
    return head + lead + (MASK if rest.strip(" \t\f") else "") + ending


def _hunk_range(start: int, length: int) -> str:
    # As difflib's unified format: "start,length", "start" for one line, "start-1,0" for none.
    first = start + 1
    if length == 1:
        return str(first)
    return f"{first - 1 if length == 0 else first},{length}"


def unified_diff(
    before: str, after: str, path: str, shown: Callable[[str], bool] | None = None
) -> str:
    """The unified diff of two texts (difflib's hunks, 3 lines of context). With `shown`, the
    lines are printed as `masked_lines` shows them: the hunks are those of the real texts."""
    if before == after:
        return ""
    a, b = _split_lines(before), _split_lines(after)
    ma, mb = (a, b) if shown is None else (masked_lines(before, shown), masked_lines(after, shown))
    out = [f"--- a/{path.lstrip('/')}\n", f"+++ b/{path.lstrip('/')}\n"]
    for group in difflib.SequenceMatcher(None, a, b).get_grouped_opcodes(3):
        first, last = group[0], group[-1]
        old = _hunk_range(first[1], last[2] - first[1])
        new = _hunk_range(first[3], last[4] - first[3])
        out.append(f"@@ -{old} +{new} @@\n")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out.extend(" " + line for line in ma[i1:i2])
                continue
            out.extend("-" + line for line in ma[i1:i2])
            out.extend("+" + line for line in mb[j1:j2])
    # As git shows it: the diff stays one line per line even without a final newline.
    return "".join(
        line if line.endswith(("\n", "\r")) else line + "\n\\ No newline at end of file\n"
        for line in out
    )


def refuse_planted_link(path: str | Path) -> None:
    """A symlinked OUTPUT is followed (a file kept in a dotfiles repository) only where nobody else
    can have planted it: a link in a world-writable or sticky folder (/tmp), or owned by another
    user, is refused (InvalidInput, exit 2) before anything is read through it or written."""
    try:
        link = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if not stat.S_ISLNK(link.st_mode):
        return
    folder = os.stat(Path(path).parent)
    if folder.st_mode & (stat.S_IWOTH | stat.S_ISVTX) or link.st_uid != os.geteuid():
        raise InvalidInput(
            [
                Problem(
                    str(path),
                    None,
                    None,
                    "is a symbolic link in a folder others can write, or owned by another user: "
                    "it is not followed",
                    "replace the link with the file itself, or name the file it points to",
                )
            ]
        )


def is_json(text: str) -> bool:
    """The text is a JSON document (the tool's template), not a properties file."""
    if not text.lstrip().startswith("{"):
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def holds_secret(text: str) -> bool:
    """The text could hold a secret: a properties file with a secret key or a credential in a
    value (or one that does not parse). The tool's JSON template never holds one."""
    if is_json(text):
        return False
    try:
        values = PropertiesText(text).values()
    except Exception:  # unparsable: assume the worst
        return True
    return any((is_secret_key(k) and v) or has_credential(v) for k, v in values.items())


def _umask() -> int:
    # Linux says it without changing it; setting and restoring it is the portable way, but other
    # threads creating files in between would get the stricter mask.
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _temp_pattern(target: Path) -> re.Pattern[str]:
    # tempfile.mkstemp(prefix=".<name>.", suffix=".tmp"): the random part is letters, digits, _.
    return re.compile(rf"\.{re.escape(target.name)}\.[A-Za-z0-9_]+\.tmp")


def remove_stale_temps(path: str | Path) -> list[str]:
    """Remove the temporary files a killed run left next to `path` (they may hold every secret of
    the file): ours only, and never through a link (a link itself is removed, not its target).
    Called under the folder lock, so no live run owns one."""
    target = Path(os.path.realpath(path))
    pattern = _temp_pattern(target)
    removed = []
    with contextlib.suppress(OSError), os.scandir(target.parent) as entries:
        for entry in entries:
            if not pattern.fullmatch(entry.name):
                continue
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if st.st_uid == os.geteuid() and (entry.is_symlink() or stat.S_ISREG(st.st_mode)):
                    os.unlink(entry.path)
                    removed.append(entry.path)
    return removed


def atomic_write(path: str | Path, text: str) -> None:
    """Replace `path` with `text` (Latin-1, line endings as given), keeping the file's owner, group
    and mode; a new file follows the umask, or is 0600 when it holds a secret.

    A temporary file in the same folder (created with O_EXCL: never through a planted link),
    fsynced, then `os.replace`: a reader or a crash sees the old file or the new one, never half
    of one.
    """
    refuse_planted_link(path)
    # Through a symlink (a file kept in a dotfiles repository, say) the link stays and its target
    # is replaced; os.replace on the link itself would turn it into a regular file.
    target = Path(os.path.realpath(path))
    try:
        old: os.stat_result | None = target.stat()
    except FileNotFoundError:
        old = None
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding=ENCODING, newline="") as fh:
            fh.write(text)
            fh.flush()
            _keep_owner(fh.fileno(), old, text)
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(target.parent)


def _keep_owner(fd: int, old: os.stat_result | None, text: str) -> None:
    if old is None:
        os.fchmod(fd, 0o600 if holds_secret(text) else 0o666 & ~_umask())
        return
    if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
        # Only root may give a file away; a user keeps the group where they belong to it.
        with contextlib.suppress(PermissionError):
            os.fchown(fd, old.st_uid, old.st_gid)
    os.fchmod(fd, stat.S_IMODE(old.st_mode))  # after fchown, which clears setuid/setgid


def _fsync_folder(folder: Path) -> None:
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
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

    A rerun that changes nothing writes nothing and keeps the mtime. A real run first removes the
    temporary files a killed run left next to OUTPUT.
    """
    target = Path(output)
    refuse_planted_link(target)
    if not dry_run:
        remove_stale_temps(target)
    try:
        current = PropertiesText.load(target).text
    except FileNotFoundError:
        current = ""
    diff = unified_diff(current, text, str(output))
    written = False
    if diff and not dry_run:
        atomic_write(target, text)
        written = True
    return FileChange(str(output), diff, written, text, before=current)


def write_back(
    props: PropertiesText, updates: Mapping[str, str], output: str | Path, *, dry_run: bool
) -> FileChange:
    """Apply `updates` to `props` and write OUTPUT (INPUT, or another file) when it changes."""
    return write_if_changed(output, props.with_values(updates).text, dry_run=dry_run)
