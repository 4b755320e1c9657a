"""The minimal-diff properties editor and the atomic writer (datomic_aws/properties.py)."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import javaproperties
import pytest

from datomic_aws import properties
from datomic_aws.properties import (
    PropertiesText,
    atomic_write,
    escape_value,
    unified_diff,
    write_back,
)

# ---------------------------------------------------------------------------------------------
# helpers


_JAVA_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def edit(text: str, updates: dict[str, str]) -> str:
    return PropertiesText(text).with_values(updates).text


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """The - and + lines of a diff, split on Java's line terminators only, endings kept."""
    a = _JAVA_LINES.findall(before)
    b = _JAVA_LINES.findall(after)
    minus, plus = [], []
    for line in difflib.unified_diff(a, b, n=0):
        if line.startswith(("---", "+++", "@@")):
            continue
        if line.startswith("-"):
            minus.append(line[1:])
        elif line.startswith("+"):
            plus.append(line[1:])
    return minus, plus


def write_bytes(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("latin-1"))
    return path


def temp_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------------------------------------
# round trip

ROUND_TRIP = {
    "lf": "protocol=ddb\nhost=localhost\nport=4334\n",
    "crlf": "protocol=ddb\r\nhost=localhost\r\nport=4334\r\n",
    "cr": "protocol=ddb\rhost=localhost\rport=4334\r",
    "mixed": "a=1\r\nb=2\nc=3\rd=4\r\n",
    "no trailing newline": "protocol=ddb\nport=4334",
    "colon and blank separators": "a:1\nb : 2\nc 3\nd\t4\ne   =   5\n\f f=6\n",
    "continuation": "a=one \\\n    two \\\n    three\nb=2\n",
    "continuation crlf": "a=one \\\r\n    two\r\nb=2\r\n",
    "comments": "# hash\n! bang\n   # indented\n#key=commented\n\n\nz=1\n",
    "latin-1": "name=caf\xe9\n# r\xe9sum\xe9\n",
    "unicode escapes": "name=\\u65e5\\u672c\nk\\u00e9y=v\n",
    "escaped key": "my\\ key=1\nodd\\=key:2\n",
    "empty": "",
    "only comments": "# nothing here\n",
    "key without value": "alone\nnext=1\n",
    "trailing blanks": "a=1   \nb=2\t\n",
}


@pytest.mark.parametrize("text", list(ROUND_TRIP.values()), ids=list(ROUND_TRIP))
def test_unchanged_document_round_trips(text: str, tmp_path: Path) -> None:
    props = PropertiesText(text)
    assert props.text == text
    assert props.with_values({}).text == text
    # Assigning every key its own value changes nothing either.
    assert props.with_values(props.values()).text == text
    path = write_bytes(tmp_path / "t.properties", text)
    loaded = PropertiesText.load(path)
    assert loaded.text == text
    assert loaded.path == str(path)


def test_load_reads_latin1_bytes(tmp_path: Path) -> None:
    path = tmp_path / "x.properties"
    path.write_bytes(b"name=caf\xe9\r\n")
    props = PropertiesText.load(path)
    assert props.get("name") == "caf\xe9"
    assert props.text == "name=caf\xe9\r\n"


def test_values_are_what_java_reads() -> None:
    text = "a = 1\nb:2\nc 3\nd=x \\\n   y\ne=\\u00e9\\t\nf\n#g=1\n"
    props = PropertiesText(text)
    assert props.values() == {"a": "1", "b": "2", "c": "3", "d": "x y", "e": "\xe9\t", "f": ""}
    assert props.values() == javaproperties.loads(text)
    assert props.get("g") is None
    assert props.get("nope") is None


# ---------------------------------------------------------------------------------------------
# editing one key

EDIT_ONE = [
    # (id, text, key, value, old line, new line)
    ("equals", "a=1\nport=4334\nz=9\n", "port", "4335", "port=4334\n", "port=4335\n"),
    ("spaced equals", "a=1\nport = 4334\nz=9\n", "port", "1", "port = 4334\n", "port = 1\n"),
    ("colon", "a=1\nport:4334\nz=9\n", "port", "1", "port:4334\n", "port:1\n"),
    ("spaced colon", "a=1\nport : 4334\nz=9\n", "port", "1", "port : 4334\n", "port : 1\n"),
    ("blank", "a=1\nport 4334\nz=9\n", "port", "1", "port 4334\n", "port 1\n"),
    ("tab", "a=1\nport\t4334\nz=9\n", "port", "1", "port\t4334\n", "port\t1\n"),
    ("indented", "a=1\n  port=4334\nz=9\n", "port", "1", "  port=4334\n", "  port=1\n"),
    ("crlf", "a=1\r\nport=4334\r\nz=9\r\n", "port", "1", "port=4334\r\n", "port=1\r\n"),
    ("cr", "a=1\rport=4334\rz=9\r", "port", "1", "port=4334\r", "port=1\r"),
    (
        "blank value",
        "a=1\naws-transactor-role=\nz=9\n",
        "aws-transactor-role",
        "r",
        "aws-transactor-role=\n",
        "aws-transactor-role=r\n",
    ),
    ("no value no separator", "a=1\nalone\nz=9\n", "alone", "v", "alone\n", "alone=v\n"),
    ("trailing blanks as separator", "a=1\nkey   \nz=9\n", "key", "v", "key   \n", "key   v\n"),
    ("escaped key kept", "a=1\nmy\\ key=1\nz=9\n", "my key", "2", "my\\ key=1\n", "my\\ key=2\n"),
    (
        "latin-1 value",
        "a=1\nname=caf\xe9\nz=9\n",
        "name",
        "th\xe9",
        "name=caf\xe9\n",
        "name=th\xe9\n",
    ),
]


@pytest.mark.parametrize(
    ("text", "key", "value", "old", "new"),
    [case[1:] for case in EDIT_ONE],
    ids=[case[0] for case in EDIT_ONE],
)
def test_editing_one_key_changes_exactly_its_line(
    text: str, key: str, value: str, old: str, new: str
) -> None:
    after = edit(text, {key: value})
    assert changed_lines(text, after) == ([old], [new])
    assert javaproperties.loads(after)[key] == value
    assert PropertiesText(after).get(key) == value


def test_unified_diff_of_one_edit_has_one_minus_and_one_plus_line() -> None:
    text = "# header\r\nprotocol=ddb\r\nport=4334\r\nhost=localhost\r\n"
    after = edit(text, {"port": "4335"})
    diff = unified_diff(text, after, "t.properties")
    lines = diff.split("\n")
    assert lines[:2] == ["--- a/t.properties", "+++ b/t.properties"]
    assert [line for line in lines[2:] if line.startswith("-")] == ["-port=4334\r"]
    assert [line for line in lines[2:] if line.startswith("+")] == ["+port=4335\r"]
    assert after == "# header\r\nprotocol=ddb\r\nport=4335\r\nhost=localhost\r\n"


def test_editing_a_continued_value_replaces_all_its_lines_and_nothing_else() -> None:
    text = "a=1\r\nb=one \\\r\n   two\r\nc=3\r\n"
    after = edit(text, {"b": "new"})
    assert after == "a=1\r\nb=new\r\nc=3\r\n"
    assert PropertiesText(after).line_of("c") == 3


def test_editing_the_last_line_without_newline_keeps_it_without_newline() -> None:
    assert edit("a=1\nb=2", {"b": "3"}) == "a=1\nb=3"


def test_editing_the_last_line_without_newline_and_appending() -> None:
    assert edit("a=1\r\nb=2", {"b": "3", "c": "4"}) == "a=1\r\nb=3\r\nc=4\r\n"


def test_same_value_changes_nothing() -> None:
    text = "a = 1\r\nb : x \\\r\n  y\r\n"
    props = PropertiesText(text)
    assert props.with_values({"a": "1", "b": "x y"}).text == text


def test_only_changed_keys_are_rewritten() -> None:
    text = "a : 1\nb = 2\nc 3\n"
    after = edit(text, {"a": "1", "b": "20", "c": "3"})
    assert after == "a : 1\nb = 20\nc 3\n"


def test_with_values_returns_a_new_document_and_keeps_the_original() -> None:
    props = PropertiesText("a=1\n", "f.properties")
    updated = props.with_values({"a": "2"})
    assert props.text == "a=1\n"
    assert props.get("a") == "1"
    assert updated.get("a") == "2"
    assert updated.path == "f.properties"


def test_blank_separator_value_starting_with_separator_char_is_escaped() -> None:
    # After `key<blank>` Java skips one `=` or `:`: it must be escaped to survive.
    for value in ("=x", ":x", "= x"):
        after = edit("k 1\n", {"k": value})
        assert after.startswith("k \\")
        assert javaproperties.loads(after) == {"k": value}


def test_equals_separator_value_starting_with_separator_char_reads_back() -> None:
    after = edit("k=1\n", {"k": "=x"})
    assert after == "k==x\n"
    assert javaproperties.loads(after) == {"k": "=x"}


# ---------------------------------------------------------------------------------------------
# commented keys

UNCOMMENT = [
    ("hash", "a=1\n# key=\nz=9\n", "# key=\n", "key=v\n"),
    ("hash no space", "a=1\n#key:\nz=9\n", "#key:\n", "key:v\n"),
    ("bang spaced", "a=1\n! key = \nz=9\n", "! key = \n", "key = v\n"),
    ("old value replaced", "a=1\n#key=old\nz=9\n", "#key=old\n", "key=v\n"),
    ("indented", "a=1\n   #key=old\nz=9\n", "   #key=old\n", "   key=v\n"),
    ("crlf", "a=1\r\n# key=\r\nz=9\r\n", "# key=\r\n", "key=v\r\n"),
]


@pytest.mark.parametrize(
    ("text", "old", "new"), [c[1:] for c in UNCOMMENT], ids=[c[0] for c in UNCOMMENT]
)
def test_commented_key_is_uncommented_in_place(text: str, old: str, new: str) -> None:
    after = edit(text, {"key": "v"})
    assert changed_lines(text, after) == ([old], [new])
    assert PropertiesText(after).get("key") == "v"


@pytest.mark.parametrize(
    "prose",
    [
        "# aws-transactor-role is generated by ensure-transactor\n",
        "# see aws-transactor-role=... in the docs\n",
        "# see key=x for details\n",
        "#key is not set here\n",
        "## key=1\n",
        "# the key= thing\n",
    ],
)
def test_prose_comments_are_never_touched(prose: str) -> None:
    text = f"a=1\n{prose}z=9\n"
    key = "aws-transactor-role" if "aws-transactor-role" in prose else "key"
    after = edit(text, {key: "v"})
    assert after == f"{text}{key}=v\n"


def test_commented_key_is_not_uncommented_when_the_key_is_set() -> None:
    text = "#key=old\nkey=1\n"
    assert edit(text, {"key": "2"}) == "#key=old\nkey=2\n"


def test_commented_last_line_without_newline_is_uncommented_without_adding_one() -> None:
    assert edit("a=1\n#key=", {"key": "v"}) == "a=1\nkey=v"


def test_uncommenting_and_appending_on_a_file_without_trailing_newline() -> None:
    assert edit("a=1\n#key=", {"key": "v", "new": "n"}) == "a=1\nkey=v\nnew=n\n"


# ---------------------------------------------------------------------------------------------
# duplicates


def test_duplicate_keys_the_last_one_is_edited() -> None:
    text = "port=1\na=x\nport=2\nz=9\n"
    props = PropertiesText(text)
    assert props.get("port") == "2"
    assert props.line_of("port") == 3
    after = props.with_values({"port": "3"})
    assert after.text == "port=1\na=x\nport=3\nz=9\n"


def test_duplicate_key_matching_the_last_value_is_left_alone() -> None:
    text = "port=1\nport=2\n"
    assert edit(text, {"port": "2"}) == text


# ---------------------------------------------------------------------------------------------
# appending


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a=1\n", "a=1\nnew=v\n"),
        ("a=1\r\n", "a=1\r\nnew=v\r\n"),
        ("a=1\r", "a=1\rnew=v\r"),
        ("a=1\r\nb=2\r\nc=3\n", "a=1\r\nb=2\r\nc=3\nnew=v\r\n"),
        ("a=1\nb=2\nc=3\r\n", "a=1\nb=2\nc=3\r\nnew=v\n"),
        ("a=1\rb=2\rc=3\n", "a=1\rb=2\rc=3\nnew=v\r"),
        ("a=1", "a=1\nnew=v\n"),
        ("a=1\r\nb=2", "a=1\r\nb=2\r\nnew=v\r\n"),
        ("", "new=v\n"),
        ("# only a comment", "# only a comment\nnew=v\n"),
    ],
)
def test_new_keys_are_appended_with_the_dominant_line_ending(text: str, expected: str) -> None:
    assert edit(text, {"new": "v"}) == expected


def test_several_new_keys_are_appended_in_update_order() -> None:
    after = edit("a=1\n", {"z": "1", "b": "2", "a": "1"})
    assert after == "a=1\nz=1\nb=2\n"


def test_appended_key_is_escaped() -> None:
    after = edit("a=1\n", {"odd key=x": "v"})
    assert after == "a=1\nodd\\ key\\=x=v\n"
    assert javaproperties.loads(after)["odd key=x"] == "v"


# ---------------------------------------------------------------------------------------------
# escaping

VALUES = [
    "plain",
    "",
    "back\\slash",
    "C:\\dir\\",
    "\\u0041 literal",
    " leading space",
    "   three",
    "trailing space ",
    "\ttab",
    "\fform feed",
    "inner\ttab",
    "line\nbreak",
    "carriage\rreturn",
    "caf\xe9 \xff\xa0",
    "\u65e5\u672c\u8a9e",
    "emoji \U0001f600",
    "\u20ac euro",
    "#not a comment",
    "!not a comment",
    "=starts with equals",
    ":starts with colon",
    "a=b:c#d!e",
    "jdbc:postgresql://host:5432/db?user=x",
    "\x00\x7f",
]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("line", ["k=old\n", "k : old\r\n", "k old\n", "#k=\n", "other=1\n"])
def test_values_are_escaped_so_java_reads_them_back(line: str, value: str) -> None:
    after = edit(line, {"k": value})
    assert javaproperties.loads(after)["k"] == value
    assert PropertiesText(after).get("k") == value
    after.encode("latin-1")  # every character is writable as Latin-1


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("a\\b", "a\\\\b"),
        (" x", "\\ x"),
        ("x y", "x y"),
        ("\fx", "\\fx"),
        ("a\tb\nc\rd", "a\\tb\\nc\\rd"),
        ("caf\xe9", "caf\xe9"),
        ("\u65e5", "\\u65e5"),
        ("\U0001f600", "\\ud83d\\ude00"),
        ("#!=:", "#!=:"),
    ],
)
def test_escape_value_exact(value: str, escaped: str) -> None:
    assert escape_value(value) == escaped


# ---------------------------------------------------------------------------------------------
# line numbers


def test_line_of_is_one_based_and_counts_continuations_and_crlf() -> None:
    text = (
        "# header\r\n"  # 1
        "protocol=ddb\r\n"  # 2
        "\r\n"  # 3
        "long=one \\\r\n"  # 4
        "     two \\\r\n"  # 5
        "     three\r\n"  # 6
        "port=4334\r\n"  # 7
        "# aws-transactor-role=\r\n"  # 8
        "host=localhost"  # 9
    )
    props = PropertiesText(text)
    assert props.line_of("protocol") == 2
    assert props.line_of("long") == 4
    assert props.line_of("port") == 7
    assert props.line_of("aws-transactor-role") == 8  # commented: where to set it
    assert props.line_of("host") == 9
    assert props.line_of("missing") is None
    assert props.entries()["port"].line == 7


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_line_of_with_each_line_ending(eol: str) -> None:
    text = eol.join(["a=1", "b=x \\", "  y", "", "c=3", "#d=", "e=5"]) + eol
    props = PropertiesText(text)
    assert [props.line_of(k) for k in "abcde"] == [1, 2, 5, 6, 7]


def test_line_of_after_an_edit_that_collapses_a_continuation() -> None:
    props = PropertiesText("a=x \\\n y \\\n z\nb=2\n").with_values({"a": "1"})
    assert props.line_of("b") == 2


def test_line_of_prefers_the_last_commented_line_and_ignores_prose() -> None:
    props = PropertiesText("# key is explained here\n#key=1\n#key=2\n")
    assert props.line_of("key") == 3


# ---------------------------------------------------------------------------------------------
# unified_diff


def test_unified_diff_empty_when_equal() -> None:
    assert unified_diff("a=1\n", "a=1\n", "f") == ""


def test_unified_diff_marks_missing_final_newline_on_its_own_line() -> None:
    diff = unified_diff("a=1\nb=2", "a=1\nb=3", "f")
    assert diff == (
        "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a=1\n"
        "-b=2\n\\ No newline at end of file\n"
        "+b=3\n\\ No newline at end of file\n"
    )


def test_unified_diff_splits_on_java_line_endings_only() -> None:
    # \x85 (NEL) and \x0c are ordinary Latin-1 characters inside a properties line.
    before = "a=x\x85y\x0cz\nb=2\n"
    after = "a=x\x85y\x0cz\nb=3\n"
    diff = unified_diff(before, after, "f")
    assert diff == "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a=x\x85y\x0cz\n-b=2\n+b=3\n"


# ---------------------------------------------------------------------------------------------
# write_back


def test_write_back_unchanged_does_not_write_and_keeps_mtime(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "t.properties", "a = 1\r\nb=2\r\n")
    os.utime(path, (1_000_000_000, 1_000_000_000))
    before = os.stat(path)
    change = write_back(PropertiesText.load(path), {"a": "1"}, path, dry_run=False)
    after = os.stat(path)
    assert change.diff == ""
    assert change.written is False
    assert change.path == str(path)
    assert after.st_mtime_ns == before.st_mtime_ns == 1_000_000_000 * 10**9
    assert after.st_ino == before.st_ino
    assert path.read_bytes() == b"a = 1\r\nb=2\r\n"


def test_write_back_changed_writes_and_keeps_mode(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "t.properties", "a = 1\r\nb=2\r\n")
    os.chmod(path, 0o640)
    change = write_back(PropertiesText.load(path), {"a": "caf\xe9", "c": "3"}, path, dry_run=False)
    assert change.written is True
    assert path.read_bytes() == b"a = caf\xe9\r\nb=2\r\nc=3\r\n"
    assert os.stat(path).st_mode & 0o7777 == 0o640
    assert "-a = 1\r\n" in change.diff
    assert "+a = caf\xe9\r\n" in change.diff
    assert "+c=3\r\n" in change.diff
    assert temp_leftovers(tmp_path) == []


def test_write_back_dry_run_returns_the_diff_and_writes_nothing(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "t.properties", "a=1\n")
    os.utime(path, (1_000_000_000, 1_000_000_000))
    change = write_back(PropertiesText.load(path), {"a": "2"}, path, dry_run=True)
    assert change.written is False
    assert change.diff == unified_diff("a=1\n", "a=2\n", str(path))
    assert change.diff.endswith("-a=1\n+a=2\n")
    assert path.read_bytes() == b"a=1\n"
    assert os.stat(path).st_mtime_ns == 1_000_000_000 * 10**9
    assert temp_leftovers(tmp_path) == []


def test_write_back_to_another_output_leaves_input_untouched(tmp_path: Path) -> None:
    source = write_bytes(tmp_path / "in.properties", "a=1\n")
    os.utime(source, (1_000_000_000, 1_000_000_000))
    output = tmp_path / "out.properties"
    props = PropertiesText.load(source)
    change = write_back(props, {"a": "2"}, output, dry_run=False)
    assert change.written is True
    assert change.path == str(output)
    assert output.read_bytes() == b"a=2\n"
    assert source.read_bytes() == b"a=1\n"
    assert os.stat(source).st_mtime_ns == 1_000_000_000 * 10**9
    # The diff is against what OUTPUT held: nothing.
    assert change.diff == unified_diff("", "a=2\n", str(output))
    # A rerun finds OUTPUT up to date and does not write it again.
    os.utime(output, (1_000_000_000, 1_000_000_000))
    again = write_back(props, {"a": "2"}, output, dry_run=False)
    assert (again.diff, again.written) == ("", False)
    assert os.stat(output).st_mtime_ns == 1_000_000_000 * 10**9


def test_write_back_to_another_output_without_changes_still_copies(tmp_path: Path) -> None:
    source = write_bytes(tmp_path / "in.properties", "a=1\r\n")
    output = write_bytes(tmp_path / "out.properties", "stale=1\n")
    change = write_back(PropertiesText.load(source), {}, output, dry_run=False)
    assert change.written is True
    assert output.read_bytes() == b"a=1\r\n"
    assert source.read_bytes() == b"a=1\r\n"


def test_write_back_dry_run_to_missing_output_creates_nothing(tmp_path: Path) -> None:
    source = write_bytes(tmp_path / "in.properties", "a=1\n")
    output = tmp_path / "out.properties"
    change = write_back(PropertiesText.load(source), {"a": "2"}, output, dry_run=True)
    assert change.written is False
    assert "+a=2\n" in change.diff
    assert not output.exists()


# ---------------------------------------------------------------------------------------------
# atomic_write


def test_atomic_write_writes_latin1_and_keeps_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "t.properties"
    atomic_write(path, "a=caf\xe9\r\nb=2\rc=3\n")
    assert path.read_bytes() == b"a=caf\xe9\r\nb=2\rc=3\n"
    assert temp_leftovers(tmp_path) == []


def test_atomic_write_keeps_mode_of_existing_file(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "t.properties", "a=1\n")
    os.chmod(path, 0o640)
    atomic_write(path, "a=2\n")
    assert os.stat(path).st_mode & 0o7777 == 0o640
    assert path.read_bytes() == b"a=2\n"


def test_atomic_write_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    real = write_bytes(tmp_path / "real.properties", "a=1\n")
    os.chmod(real, 0o640)
    link = tmp_path / "link.properties"
    link.symlink_to(real)
    atomic_write(link, "a=2\n")
    assert link.is_symlink()
    assert real.read_bytes() == b"a=2\n"
    assert os.stat(real).st_mode & 0o7777 == 0o640
    assert temp_leftovers(tmp_path) == []


def test_atomic_write_failing_replace_keeps_original_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_bytes(tmp_path / "t.properties", "a=1\n")
    calls: list[tuple[str, str]] = []

    def broken_replace(src: str, dst: str) -> None:
        calls.append((str(src), str(dst)))
        assert Path(src).read_bytes() == b"a=2\n"  # the new content was fully written first
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(properties.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, "a=2\n")
    assert len(calls) == 1
    assert Path(calls[0][0]).parent == tmp_path
    assert path.read_bytes() == b"a=1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.properties"]


def test_atomic_write_interrupted_while_writing_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_bytes(tmp_path / "t.properties", "a=1\n")

    def interrupted_fsync(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(properties.os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, "a=2\n")
    assert path.read_bytes() == b"a=1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.properties"]


def test_atomic_write_unwritable_text_keeps_original(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "t.properties", "a=1\n")
    with pytest.raises(UnicodeEncodeError):
        atomic_write(path, "a=\u65e5\n")  # not Latin-1: the caller must escape
    assert path.read_bytes() == b"a=1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.properties"]


def test_write_back_failure_keeps_original(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_bytes(tmp_path / "t.properties", "a=1\r\n")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(properties.os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_back(PropertiesText.load(path), {"a": "2"}, path, dry_run=False)
    assert path.read_bytes() == b"a=1\r\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.properties"]
