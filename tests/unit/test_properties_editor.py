"""Property-based tests of the properties editor (datomic_aws/properties.py): whatever the file
(escapes, unicode, continued values and keys, comments, a byte-order mark, CRLF/LF/CR, a last line
ending in a continuation), an edit reads back as the old entries plus the updates, changes only the
lines of the updated keys, and an edit that changes nothing returns the input byte for byte.

The oracle is the parser itself (javaproperties, reference §8), read independently of the editor.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

import boto3
import javaproperties
import pytest
from conftest import SAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datomic_aws import names
from datomic_aws.app.ensure_transactor import ensure_transactor
from datomic_aws.aws import AwsContext
from datomic_aws.errors import UnsafeEdit
from datomic_aws.properties import PropertiesText, write_back

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_JAVA_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")

# Pieces of an escaped key or value as they appear in a file: plain characters, Latin-1 beyond
# ASCII, and every escape Java knows (including \u escapes and a surrogate pair).
PLAIN = st.sampled_from([*"abcXYZ019.-_/", "\xe9", "\xff", "=", ":", "#", "!", " "])
# The \u escapes include a surrogate pair.
_SIMPLE_ESCAPES = ["\\\\", "\\t", "\\n", "\\r", "\\f", "\\=", "\\:", "\\ ", "\\#", "\\x"]
ESCAPES = st.sampled_from([*_SIMPLE_ESCAPES, "\\u00e9", "\\u65e5", "\\ud83d\\ude00"])
TOKENS = st.lists(st.one_of(PLAIN, PLAIN, ESCAPES), max_size=8)
KEY_TOKENS = st.lists(
    st.one_of(st.sampled_from(list("abcdkKey019.-_")), st.sampled_from(["\\ ", "\\=", "\\:"])),
    min_size=1,
    max_size=5,
)
WS = st.sampled_from(["", " ", "  ", "\t", "\f"])
EOLS = st.sampled_from(["\n", "\r\n", "\r"])
SEPS = st.sampled_from(["=", ":", " = ", " : ", " ", "\t", "  =\t"])
# Keys the updates may name that the file may also hold as a commented `# key=` line.
PLAIN_KEYS = st.sampled_from(["alpha", "beta", "gamma", "aws-transactor-role", "java-xmx"])
# Values of updates: anything a string can hold, line breaks and non-Latin-1 characters included.
VALUES = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " lead", "=eq", ":colon", "trail\\", "a\nb", "\t", "日本", "\U0001f600"]),
)


@dataclass
class Doc:
    text: str
    bom: str


@st.composite
def _joined(draw: st.DrawFn, tokens: list[str], eol: str) -> str:
    """Tokens with line continuations between some of them (never inside an escape)."""
    out = []
    for i, token in enumerate(tokens):
        if i and draw(st.booleans()) and draw(st.booleans()):
            out.append("\\" + eol + draw(WS))
        out.append(token)
    return "".join(out)


@st.composite
def _line(draw: st.DrawFn, eol: str) -> str:
    kind = draw(st.sampled_from(["kv", "kv", "kv", "commented", "comment", "blank"]))
    lead = draw(WS)
    if kind == "kv":
        key = draw(_joined(draw(KEY_TOKENS), eol))
        value = draw(_joined(draw(TOKENS), eol))
        return f"{lead}{key}{draw(SEPS)}{value}"
    if kind == "commented":
        mark = draw(st.sampled_from(["#", "!", "# "]))
        return f"{lead}{mark}{draw(PLAIN_KEYS)}{draw(SEPS)}{''.join(draw(TOKENS))}"
    if kind == "comment":
        tail = draw(st.sampled_from(["", " \\", "\\\\"]))
        return f"{lead}# {''.join(draw(TOKENS))}{tail}"
    return lead


@st.composite
def documents(draw: st.DrawFn) -> Doc:
    mixed = draw(st.booleans())
    file_eol = draw(EOLS)
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        eol = draw(EOLS) if mixed else file_eol
        lines.append(draw(_line(eol)) + eol)
    ending = draw(st.sampled_from(["none", "eol", "continuation", "continuation-eol", "ws-after"]))
    eol = file_eol
    if ending == "none" and lines:
        lines[-1] = lines[-1].rstrip("\r\n")
    elif ending.startswith("continuation"):
        # The reported case: the last value ends in a `\` continuation, with or without an
        # ending, and nothing after it.
        lines.append(f"last={''.join(draw(TOKENS))}\\" + (eol if ending.endswith("eol") else ""))
    elif ending == "ws-after":
        lines.append(f"last=x\\{eol}   ")
    bom = draw(st.sampled_from(["", "", "\xef\xbb\xbf"]))
    return Doc(bom + "".join(lines), bom)


def _entries(text: str, bom: str) -> dict[str, str]:
    return dict(javaproperties.loads(text[len(bom) :]))


@st.composite
def updates_for(draw: st.DrawFn, doc: Doc) -> dict[str, str]:
    existing = sorted(_entries(doc.text, doc.bom))
    keys = st.one_of(
        PLAIN_KEYS,
        st.sampled_from(existing) if existing else PLAIN_KEYS,
        st.text(min_size=1, max_size=6),
    )
    return draw(st.dictionaries(keys, VALUES, max_size=4))


def _element_lines(text: str) -> list[tuple[int, int, object]]:
    """(first line, line count, element) for each element of a document without BOM."""
    out, line = [], 0
    for el in javaproperties.parse(text):
        count = len(_JAVA_LINES.findall(el.source))
        out.append((line, count, el))
        line += count
    return out


def _may_change(text: str, bom: str, updates: dict[str, str]) -> set[int]:
    """Lines (0-based) an edit may touch: those of the last element of each updated key, the
    last commented `# key=` line of an updated key that is not set, and the document's last line
    (it may gain a line ending, or an empty line after a trailing continuation)."""
    body = text[len(bom) :]
    elements = _element_lines(body)
    allowed: set[int] = set()
    last_kv: dict[str, tuple[int, int]] = {}
    commented: dict[str, tuple[int, int]] = {}
    for first, count, el in elements:
        if isinstance(el, javaproperties.KeyValue):
            last_kv[el.key] = (first, count)
        elif isinstance(el, javaproperties.Comment):
            m = re.match(r"^[ \t\f]*[#!][ \t\f]*([A-Za-z0-9_.\-]+)[ \t\f]*[=:]", el.source)
            if m:
                commented[m.group(1)] = (first, count)
    for key in updates:
        span = last_kv.get(key) or commented.get(key)
        if span:
            allowed.update(range(span[0], span[0] + span[1]))
    total = len(_JAVA_LINES.findall(body))
    if total:
        allowed.add(total - 1)
    return allowed


def _changed_old_lines(before: str, after: str) -> set[int]:
    a, b = _JAVA_LINES.findall(before), _JAVA_LINES.findall(after)
    changed: set[int] = set()
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            changed.update(range(i1, i2))
    return changed


@SETTINGS
@given(st.data())
def test_an_edit_reads_back_as_the_old_entries_plus_the_updates(data: st.DataObject) -> None:
    doc = data.draw(documents())
    updates = data.draw(updates_for(doc))
    old = PropertiesText(doc.text)
    assert old.values() == _entries(doc.text, doc.bom)
    new = old.with_values(updates)
    assert _entries(new.text, doc.bom) == {**old.values(), **updates}
    assert new.text.startswith(doc.bom)
    if doc.bom:
        # Kept once, and never read as part of the first key.
        assert not new.text[len(doc.bom) :].startswith(doc.bom)
    body_old, body_new = doc.text[len(doc.bom) :], new.text[len(doc.bom) :]
    assert _changed_old_lines(body_old, body_new) <= _may_change(doc.text, doc.bom, updates)


@SETTINGS
@given(st.data())
def test_an_edit_that_changes_nothing_returns_the_input_byte_identical(
    data: st.DataObject,
) -> None:
    doc = data.draw(documents())
    old = PropertiesText(doc.text)
    values = old.values()
    keys = data.draw(st.lists(st.sampled_from(sorted(values)))) if values else []
    same = {k: values[k] for k in keys}
    assert old.with_values(same).text == doc.text
    assert old.with_values({}).text == doc.text


@SETTINGS
@given(st.data())
def test_a_second_edit_with_the_same_updates_changes_nothing(data: st.DataObject) -> None:
    doc = data.draw(documents())
    updates = data.draw(updates_for(doc))
    once = PropertiesText(doc.text).with_values(updates)
    assert once.with_values(updates).text == once.text


# ---------------------------------------------------------------------------------------------
# The named cases


GENERATED = {"aws-transactor-role": "datomic-orders-transactor", "aws-peer-role": "datomic-x-peer"}


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("final", ["", "EOL", "EOL   "])
def test_a_file_ending_in_a_continuation_gets_its_keys_and_keeps_every_value(
    tmp_path: Path, eol: str, final: str
) -> None:
    text = (
        f"protocol=ddb{eol}aws-dynamodb-table=orders{eol}"
        f"memcached-config-timeout-msec=100{eol}java-opts=-Dfoo=1 \\{eol}   -Dbar=2 \\"
        + final.replace("EOL", eol)
    )
    path = tmp_path / "transactor.properties"
    path.write_bytes(text.encode("latin-1"))
    before = PropertiesText.load(path).values()
    assert before["java-opts"] == "-Dfoo=1 -Dbar=2 "
    change = write_back(PropertiesText.load(path), GENERATED, path, dry_run=False)
    assert change.written
    after = PropertiesText.load(path)
    assert after.values() == {**before, **GENERATED}
    assert after.text.startswith(text.rstrip(" "))


def test_a_continued_key_is_edited_as_one_key() -> None:
    text = "ke\\\n  y=old\nother=1\n"
    new = PropertiesText(text).with_values({"key": "new"})
    assert new.values() == {"key": "new", "other": "1"}
    assert new.text.endswith("other=1\n")


@pytest.mark.parametrize("bom", ["\xef\xbb\xbf", "\ufeff"])
def test_a_byte_order_mark_is_kept_and_not_part_of_the_first_key(bom: str) -> None:
    text = f"{bom}protocol=ddb\nhost=localhost\n"
    doc = PropertiesText(text)
    assert doc.values() == {"protocol": "ddb", "host": "localhost"}
    new = doc.with_values({"protocol": "dev", "port": "4334"})
    assert new.text == f"{bom}protocol=dev\nhost=localhost\nport=4334\n"


def test_an_edit_that_would_change_another_line_is_refused_naming_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "transactor.properties"
    path.write_bytes(b"a=1\nb=2\n")
    doc = PropertiesText.load(path)

    class Broken(PropertiesText):
        def _edited(self, updates: object) -> str:  # the editor going wrong, for the check
            return "a=1\\\nb=2\nc=3\n"

    broken = Broken(doc.text, doc.path)
    with pytest.raises(UnsafeEdit) as info:
        write_back(broken, {"c": "3"}, path, dry_run=False)
    assert str(path) in str(info.value)
    assert "a" in info.value.keys and "b" in info.value.keys
    assert path.read_bytes() == b"a=1\nb=2\n"


def test_ensure_transactor_on_a_file_ending_in_a_continuation_stores_every_value(
    ctx: AwsContext, tmp_path: Path
) -> None:
    # The reported case end to end (in-process moto): the generated keys are appended as keys, and
    # the configuration stored in SSM holds the last value as the file means it.
    path = tmp_path / "transactor.properties"
    text = (SAMPLES / "transactor.properties").read_text(encoding="latin-1")
    for line in ("aws-transactor-role=\n", "aws-peer-role=\n"):  # so that they are appended
        assert text.count(line) == 1
        text = text.replace(line, "")
    path.write_bytes((text + "memcached=a:11211,\\\n    b:11211\\").encode("latin-1"))
    before = PropertiesText.load(path).values()
    assert before["memcached"] == "a:11211,b:11211"

    ensure_transactor(ctx, path)

    after = PropertiesText.load(path).values()
    role = after["aws-transactor-role"]
    assert role.startswith("datomic-")
    assert "aws-transactor-role" not in before
    generated = (
        "aws-transactor-role",
        "aws-peer-role",
        "datomic-aws-digest-secret",
        "datomic-aws-config-digest",
    )
    assert after == {
        **before,
        **{key: after[key] for key in generated},
        "datomic-aws-config-version": "1",
    }
    stored = boto3.client("ssm", region_name="us-east-1").get_parameter(
        Name=names.ssm_parameter(before["aws-dynamodb-table"]), WithDecryption=True
    )["Parameter"]["Value"]
    assert dict(javaproperties.loads(stored))["memcached"] == "a:11211,b:11211"
    assert dict(javaproperties.loads(stored))["aws-transactor-role"] == role
