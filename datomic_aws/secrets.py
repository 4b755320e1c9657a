"""What counts as a secret in the operator's files, and masking credentials inside any text.

Owns the rules only, as pure functions over strings: which key names a secret (`sql-password`,
`sql-passwd`, `metrics-api-key`, legacy `aws-*-secret-key`...), and which part of a value is a
credential whatever its key: a URL's user-info (`scheme://user:pass@host`), Oracle's
`user/pass@host`, a `password=...` driver parameter. The allowlist of keys whose values may be
shown at all lives with the schemas (config/common.py). No I/O, no AWS.
"""

from __future__ import annotations

import re

MASK = "********"

# Words that make a key (or a parameter inside a value) a secret.
SECRET_WORDS = (
    r"passw(?:or)?d|passphrase|pwd|secret|license-key|access-key|token|api[-_.]?key"
    r"|credential|private[-_.]?key"
)
_SECRET_KEY = re.compile(SECRET_WORDS, re.IGNORECASE)

# `scheme://user:pass@host`, `scheme://token@host`: the whole user-info is a credential.
_URL_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s?#\"']+@")
# Oracle's `user/pass@host` (`jdbc:oracle:thin:scott/tiger@db:1521:orcl`): after a start, a blank,
# `:` or `=`, a user without `/`, then the password up to the `@`. A URL's path never matches: its
# `/` follows `:` or another `/` directly.
_SLASH_USER = re.compile(r"(?<![^\s:=;,\"'(])(?P<head>[^\s/:@=;,\"'()\\]+/)[^\s/@;,\"'()]+@")
# A parameter naming a secret inside a value: `password=...` in `sql-driver-params`, a query
# string's `token=...`; the value runs to the next `;`, `&`, `,` or blank.
_SECRET_PARAM = re.compile(
    rf"(?P<head>[A-Za-z0-9_.\-]*(?:{SECRET_WORDS})[A-Za-z0-9_.\-]*[ \t]*=[ \t]*)"
    r"(?P<value>[^;&,\s\"']+)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def has_credential(value: str) -> bool:
    """The value carries a credential even under an ordinary key."""
    return any(p.search(value) for p in (_URL_USERINFO, _SLASH_USER, _SECRET_PARAM))


def mask_credentials(text: str) -> str:
    """`text` with every credential inside it masked; line endings and everything else kept."""
    text = _URL_USERINFO.sub(lambda m: m.group("head") + MASK + "@", text)
    text = _SLASH_USER.sub(lambda m: m.group("head") + MASK + "@", text)
    return _SECRET_PARAM.sub(
        lambda m: m.group(0) if m.group("value") == MASK else m.group("head") + MASK, text
    )
