"""Session key <-> directory name under ``sessions.d/`` (and in the mount).

The seed PR (#19528) wrote ``agent:main:cron:14bbd904`` as ``agent--main--cron--14bbd904``. We
keep that readable form, but the seed's plain ``:`` -> ``--`` swap was ambiguous (``a:b`` and
``a--b`` collided), let ``/`` and ``..`` through and had no length cap. The scheme here is
injective for every key, reversible from the name alone for all but very long keys, and only ever
produces names that are safe on Linux:

* the key is taken as its exact UTF-8 bytes (no case folding: Matrix and Signal IDs are
  case-sensitive, so ``Agent:X`` and ``agent:x`` are different sessions);
* bytes in ``[A-Za-z0-9._-]`` are written as they are and ``:`` is written ``--``;
* a ``-`` next to a ``:`` or another ``-`` in the key is written ``%2D``, so a run of ``-`` in a
  name is either one literal ``-`` or an even run of ``--`` (one ``:`` each): ``--`` in a name
  always means ``:``;
* every other byte is ``%XX`` with upper-case hex (``%`` itself is ``%25``, ``~`` is ``%7E``);
* a leading ``.`` is ``%2E`` (no ``.``, ``..`` or hidden names), and a leading ``-`` or ``:`` is
  ``%2D`` or ``%3A``, so no name starts with ``-`` and ``rm *`` never reads one as an option;
* a name that would be longer than :data:`MAX_NAME_BYTES` becomes
  ``<readable prefix>~<32 hex digits of sha256(key)>``. ``~`` never appears literally in any
  other name, so hashed names are recognisable; their exact key lives in the file
  :data:`KEY_FILE` inside the session's directory, and :func:`matches` confirms it.

Every name is pure ASCII from ``[A-Za-z0-9._%~-]`` and at most 200 bytes, which leaves 55 bytes
of the 255-byte ``NAME_MAX`` for a ``.<pid>.<uuid>.tmp`` suffix. Decoding accepts exactly the
names :func:`encode` produces (decode, re-encode, compare), so one key never has two spellings.

Both directions run on every FUSE lookup and every listing, so keys of the usual shape (runs of
``[A-Za-z0-9._]`` joined by single ``:`` or ``-``) take a precompiled-regex fast path.

This module is pure stdlib and imports only :mod:`sessionfs.errors`.
"""

from __future__ import annotations

import hashlib
import re
from typing import NoReturn
from urllib.parse import unquote_to_bytes

from sessionfs.errors import InvalidKey, InvalidName

__all__ = ["KEY_FILE", "MAX_NAME_BYTES", "decode", "encode", "is_hashed", "matches"]

#: Longest name :func:`encode` returns, in bytes (= characters: names are ASCII). 255 minus room
#: for a temp suffix such as ``.<pid>.<uuid>.tmp`` (at most 49 bytes).
MAX_NAME_BYTES = 200

#: File inside a session's directory that holds the exact key (its UTF-8 bytes) when the
#: directory name is hashed and so cannot be decoded.
KEY_FILE = "key"

# Hex digits of sha256 kept in a hashed name: 128 bits, so a collision is not a practical concern
# (and would still be caught by ``matches`` against KEY_FILE).
_HASH_CHARS = 32
# A hashed name is ``prefix + "~" + hash``; the prefix is cut at a character boundary, and one
# character is at most 4 UTF-8 bytes = 12 name bytes, so the prefix is 156..167 bytes long.
_PREFIX_MAX = MAX_NAME_BYTES - 1 - _HASH_CHARS
_PREFIX_MIN = _PREFIX_MAX - 11

_LITERAL_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-:")
# Indexed by byte value: what the byte becomes, before the ``-``/``:``/leading-byte fix-ups.
# Used with ``str.translate`` over the latin-1 view of the UTF-8 bytes (one char per byte).
_BYTE_TABLE = [chr(b) if b in _LITERAL_BYTES else f"%{b:02X}" for b in range(256)]

# Fast path: runs of [A-Za-z0-9._] joined by single ':' or '-', not starting with '.' (nor '-'
# or ':'). For these, encode is ``replace(':', '--')`` and decode is its inverse.
_FAST_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._]*(?:[:-][A-Za-z0-9._]+)*")
_FAST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._]*(?:--?[A-Za-z0-9._]+)*")

_ADJACENT_DASH = re.compile(r"-(?=[-:])|(?<=[-:])-")
_BAD_CHAR = re.compile(r"[^A-Za-z0-9._%-]")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-F]{2})")
_ODD_DASH_RUN = re.compile(r"(?<!-)-(?:--)+(?!-)")
_DIGEST = re.compile(rf"[0-9a-f]{{{_HASH_CHARS}}}")
# Tokens of a canonical name; continuation bytes of a multi-byte character are %80..%BF.
_TOKEN = re.compile(r"%[0-9A-F]{2}|--|.", re.DOTALL)
_CONTINUATION = re.compile(r"%[89AB][0-9A-F]")


def encode(key: str) -> str:
    """The directory name for ``key``: readable, unique to the key, safe as one path component.

    :raises InvalidKey: ``key`` is empty or not valid Unicode text (a lone surrogate), so it has
        no UTF-8 bytes to encode and could never be written to ``meta.json`` by openclaw either.
    :return: a name for which :func:`decode` gives ``key`` back, or a hashed name (see
        :func:`is_hashed`) when the plain one would exceed :data:`MAX_NAME_BYTES`.
    """
    name = key.replace(":", "--") if _FAST_KEY.fullmatch(key) else _encode_slow(key)
    if len(name) <= MAX_NAME_BYTES:
        return name
    return _hashed_name(name, key)


def decode(name: str) -> str | None:
    """The key whose name is ``name``, so a listing or a lookup can be mapped back to a session.

    :return: the key for a plain name; ``None`` for a well-formed hashed name, whose key cannot
        be recovered from the name: read :data:`KEY_FILE` and check it with :func:`matches`.
    :raises InvalidName: no key encodes to ``name`` (editor scratch files, ``.Trash``, names
        typed by hand, ...); the message says why. Accepting only canonical names keeps one
        spelling per session, so a lookup can never reach a session under a second name.
    """
    if len(name) <= MAX_NAME_BYTES and _FAST_NAME.fullmatch(name):
        return name.replace("--", ":")
    if "~" in name:
        _check_hashed(name)
        return None
    return _decode_plain(name)


def matches(name: str, key: str) -> bool:
    """Whether ``name`` is the name of ``key``: the check for a hashed name's KEY_FILE content.

    Never raises for a key that cannot be stored (that key has no name, so nothing matches it),
    which lets a caller feed it whatever a KEY_FILE holds.
    """
    try:
        return encode(key) == name
    except InvalidKey:
        return False


def is_hashed(name: str) -> bool:
    """Whether ``name`` is a well-formed hashed name, i.e. one whose key is kept in KEY_FILE.

    True exactly when :func:`decode` returns ``None``; never raises. On the output of
    :func:`encode` it tells a writer whether it must also write KEY_FILE.
    """
    if "~" not in name:
        return False
    try:
        _check_hashed(name)
    except InvalidName:
        return False
    return True


def _encode_slow(key: str) -> str:
    """The plain (possibly over-long) name of any key; the general path behind the fast one."""
    if not key:
        raise InvalidKey("the empty string is not a session key")
    try:
        data = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKey(
            f"session key {_shorten(key)} is not valid Unicode text "
            f"(lone surrogate {key[exc.start]!r} at index {exc.start})"
        ) from None
    return _encode_bytes(data)


def _encode_bytes(data: bytes) -> str:
    """Escape UTF-8 bytes per the scheme in the module docstring (no length policy)."""
    name = data.decode("latin-1").translate(_BYTE_TABLE)
    if "-" in name:  # neighbours of '-' are still the key's own bytes here: ':' is not yet '--'
        name = _ADJACENT_DASH.sub("%2D", name)
    if name[0] in ".-:":
        name = f"%{ord(name[0]):02X}{name[1:]}"
    return name.replace(":", "--")


def _hashed_name(plain: str, key: str) -> str:
    """``<prefix>~<hash>`` for a key whose plain name is too long.

    The prefix is the longest start of the plain name that ends on a character boundary (never
    inside a ``%XX`` escape, a ``--`` or a multi-byte character), so it still reads as the start
    of the key.
    """
    cut = 0
    for token in _TOKEN.finditer(plain):
        start = token.start()
        if start > _PREFIX_MAX:
            break
        if not _CONTINUATION.fullmatch(token.group()):
            cut = start
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:_HASH_CHARS]
    return f"{plain[:cut]}~{digest}"


def _check_hashed(name: str) -> None:
    """Raise InvalidName unless ``name`` has the shape :func:`_hashed_name` produces."""
    prefix, _, digest = name.rpartition("~")
    if "~" in prefix:
        _reject(name, "more than one '~' (a hashed name has exactly one, before the hash)")
    if not _DIGEST.fullmatch(digest):
        _reject(name, f"a hashed name ends in '~' and {_HASH_CHARS} lower-case hex digits")
    if not _PREFIX_MIN <= len(prefix) <= _PREFIX_MAX:
        _reject(
            name,
            f"the part before '~' is {len(prefix)} bytes; in a hashed name it is "
            f"{_PREFIX_MIN} to {_PREFIX_MAX}",
        )
    _parse(prefix, name, whole=False)


def _decode_plain(name: str) -> str:
    """Decode a name that missed the fast path, rejecting everything :func:`encode` cannot give."""
    if not name:
        _reject(name, "empty name")
    if len(name) > MAX_NAME_BYTES:
        _reject(
            name,
            f"longer than {MAX_NAME_BYTES} bytes without a '~' (longer keys get hashed names)",
        )
    return _parse(name, name, whole=True)


def _parse(part: str, name: str, *, whole: bool) -> str:
    """Unescape ``part`` (all of ``name``, or a hashed name's prefix) and check it is canonical."""
    bad = _BAD_CHAR.search(part)
    if bad:
        char = bad.group()
        if char == "/":
            what = "'/'"
        elif char == "\0":
            what = "NUL"
        elif char == "~":
            what = "'~' (only a hashed name has one)"
        elif not char.isascii():
            what = f"the non-ASCII character {char!r}"
        else:
            what = f"the character {char!r}"
        _reject(
            name,
            f"contains {what} at offset {bad.start()}; names use only A-Z a-z 0-9 . _ - "
            "and %XX escapes",
        )
    if part[0] == ".":
        _reject(name, "starts with '.' (a leading '.' is written %2E)")
    if part[0] == "-":
        _reject(name, "starts with '-' (a leading '-' or ':' is written %2D or %3A)")
    bad = _BAD_ESCAPE.search(part)
    if bad:
        digits = part[bad.start() + 1 : bad.start() + 3]
        if len(digits) == 2 and all(c in "0123456789abcdefABCDEF" for c in digits):
            _reject(name, f"lower-case escape %{digits} (escapes use upper-case hex)")
        _reject(name, f"incomplete escape {part[bad.start() : bad.start() + 3]!r}")
    bad = _ODD_DASH_RUN.search(part)
    if bad:
        _reject(
            name,
            f"a run of {len(bad.group())} '-' at offset {bad.start()} ('--' is ':', and a '-' "
            "next to ':' or '-' is written %2D, so runs of '-' are 1 or even)",
        )
    data = unquote_to_bytes(part.replace("--", ":"))
    try:
        key = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        _reject(name, f"unescapes to bytes that are not UTF-8 ({exc.reason} at byte {exc.start})")
    canonical = _encode_bytes(data)
    if canonical == part:
        return key
    # A hashed name's prefix stops before the key's next character, which decided whether a
    # final '-' was literal or %2D; both are possible there.
    if not whole and part.endswith("%2D") and canonical == part[:-3] + "-":
        return key
    _reject(name, _explain(part, canonical, key))


def _explain(part: str, canonical: str, key: str) -> str:
    """Say where ``part`` departs from the canonical spelling ``canonical`` of ``key``."""
    i = next(
        (i for i, (a, b) in enumerate(zip(part, canonical, strict=False)) if a != b),
        min(len(part), len(canonical)),
    )
    here = part[i : i + 3]
    if here == "%3A":
        why = "':' is written '--' (%3A only at the start)"
    elif here.startswith("%") and canonical[i : i + 1] not in ("", "%"):
        why = f"{here} escapes {canonical[i]!r}, which is written literally"
    elif here.startswith("-") and canonical.startswith("%2D", i):
        why = "a '-' next to ':' or '-' must be written %2D"
    else:
        why = f"not the canonical spelling at offset {i}"
    return f"{why}; key {_shorten(key)} is spelled {_shorten(canonical)}"


def _reject(name: str, reason: str) -> NoReturn:
    raise InvalidName(f"{_shorten(name)} is not a session name: {reason}")


def _shorten(text: str, limit: int = 80) -> str:
    """``repr`` of ``text``, cut for error messages: keys have no length limit."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"... ({len(text)} chars)"
