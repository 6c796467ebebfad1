"""Tests for sessionfs.keys: the session key <-> directory name encoding."""

from __future__ import annotations

import hashlib
import itertools
import re

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from sessionfs import keys
from sessionfs.errors import InvalidKey, InvalidName
from sessionfs.keys import KEY_FILE, MAX_NAME_BYTES, decode, encode, is_hashed, matches

NAME_SHAPE = re.compile(r"[A-Za-z0-9._%~-]+")

# Keys with every kind of byte the scheme treats specially, so hypothesis finds edge cases fast.
tricky_text = st.text(alphabet=st.sampled_from(":-.%~_aA0/\0 é€🦞"), min_size=1, max_size=40)
any_key = st.one_of(st.text(min_size=1), tricky_text)
long_key = st.one_of(
    st.text(min_size=60, max_size=400),
    st.text(alphabet=st.sampled_from(":-.a%é🦞"), min_size=60, max_size=300),
)


def roundtrips(key: str) -> None:
    """The name of ``key`` leads back to exactly ``key``, plainly or through KEY_FILE."""
    name = encode(key)
    if is_hashed(name):
        assert decode(name) is None
        assert matches(name, key)
    else:
        assert decode(name) == key


def check_name_shape(name: str) -> None:
    assert NAME_SHAPE.fullmatch(name), name
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert name not in (".", "..")
    assert not name.startswith(".")
    assert not name.startswith("-")


# --- the public surface --------------------------------------------------------------------------


def test_public_api() -> None:
    assert set(keys.__all__) == {
        "KEY_FILE",
        "MAX_NAME_BYTES",
        "decode",
        "encode",
        "is_hashed",
        "matches",
    }
    assert KEY_FILE == "key"
    assert MAX_NAME_BYTES == 200


# --- exact examples ------------------------------------------------------------------------------

EXAMPLES = [
    # the readable form
    ("agent:main:telegram:direct:james", "agent--main--telegram--direct--james"),
    ("agent:main:cron:14bbd904", "agent--main--cron--14bbd904"),
    # the pairs the seed PR's plain ':' <-> '--' swap confused
    ("a:b", "a--b"),
    ("a--b", "a%2D%2Db"),
    ("a-:b", "a%2D--b"),
    ("a:-b", "a--%2Db"),
    ("a%2Db", "a%252Db"),
    ("a::b", "a----b"),
    ("a-b", "a-b"),
    ("a-b-c", "a-b-c"),
    ("a:", "a--"),
    (":a", "%3Aa"),
    (":", "%3A"),
    ("::", "%3A--"),
    (":-a", "%3A%2Da"),
    ("a-", "a-"),
    # leading '.' and '-', '.' and '..'
    (".", "%2E"),
    ("..", "%2E."),
    (".hidden", "%2Ehidden"),
    ("-rf", "%2Drf"),
    ("--", "%2D%2D"),
    # bytes that are never literal
    ("a/b", "a%2Fb"),
    ("..:..", "%2E.--.."),
    ("a\0b", "a%00b"),
    ("a b", "a%20b"),
    ("a~b", "a%7Eb"),
    ("100%", "100%25"),
    ("é", "%C3%A9"),
    ("🦞", "%F0%9F%A6%9E"),
    ("Agent:X", "Agent--X"),
]


@pytest.mark.parametrize(("key", "name"), EXAMPLES)
def test_examples(key: str, name: str) -> None:
    assert encode(key) == name
    assert decode(name) == key
    assert matches(name, key)


def test_examples_are_distinct() -> None:
    names = [name for _, name in EXAMPLES]
    assert len(set(names)) == len(names)


# --- realistic keys stay readable ----------------------------------------------------------------

COMMON = [
    "agent:main:main",
    "global",
    "agent:main:direct:alice",
    "agent:main:telegram:direct:james",
    "agent:work:telegram:acct2:direct:987654321",
    "agent:main:slack:channel:c0123abcd:thread:1712345678.123456",
    "agent:main:discord:channel:112233445566778899",
    "agent:main:cron:14bbd904",
    "agent:main:cron:14bbd904:run:0b6f3a1e-9c1d-4e55-8f7a-2a6b3c4d5e6f",
    "agent:main:subagent:0b6f3a1e-9c1d-4e55-8f7a-2a6b3c4d5e6f",
    "agent:main:subagent:research:subagent:summarise:subagent:3f2a",
    "agent:main:explicit:model-run-0b6f3a1e-9c1d-4e55-8f7a-2a6b3c4d5e6f",
    "agent:main:dashboard:default",
    "agent:main:heartbeat",
    "acp:claude-code:0b6f3a1e",
    "hook:0b6f3a1e-9c1d-4e55-8f7a-2a6b3c4d5e6f",
    "node:my-laptop",
]


@pytest.mark.parametrize("key", COMMON)
def test_common_keys_have_no_escapes(key: str) -> None:
    name = encode(key)
    assert name == key.replace(":", "--")
    assert "%" not in name
    assert decode(name) == key


SIGILS = [
    (
        "agent:main:whatsapp:direct:+4915123456789",
        "agent--main--whatsapp--direct--%2B4915123456789",
    ),
    (
        "agent:main:matrix:channel:!AbCdEfGh:example.org",
        "agent--main--matrix--channel--%21AbCdEfGh--example.org",
    ),
    ("agent:main:discord:channel:#general", "agent--main--discord--channel--%23general"),
    ("agent:main:direct:@alice", "agent--main--direct--%40alice"),
    # Telegram group IDs are negative: a '-' right after ':' is %2D, or '---' would be ambiguous
    (
        "agent:main:telegram:group:-1001234567890:topic:42",
        "agent--main--telegram--group--%2D1001234567890--topic--42",
    ),
    (
        "agent:main:matrix:direct:@Alice:matrix.org",
        "agent--main--matrix--direct--%40Alice--matrix.org",
    ),
]


@pytest.mark.parametrize(("key", "name"), SIGILS)
def test_sigil_keys_escape_only_the_sigil(key: str, name: str) -> None:
    assert encode(key) == name
    assert decode(name) == key


def test_case_distinct_keys_stay_distinct() -> None:
    pairs = [
        ("Agent:X", "agent:x"),
        ("agent:main:matrix:channel:!AbC:ex.org", "agent:main:matrix:channel:!abc:ex.org"),
    ]
    for upper, lower in pairs:
        assert encode(upper) != encode(lower)
        assert decode(encode(upper)) == upper
        assert decode(encode(lower)) == lower


# --- properties ----------------------------------------------------------------------------------


@given(any_key)
@example("🦞:\U0001d518\u4e2d\u0000")
@example("-")
@example(":")
@example("~")
def test_roundtrip(key: str) -> None:
    roundtrips(key)


@given(long_key)
@example("x" * 201)
@example("🦞" * 50)
@example("a:-" * 80)
def test_roundtrip_long(key: str) -> None:
    roundtrips(key)


@given(any_key)
def test_name_shape(key: str) -> None:
    check_name_shape(encode(key))


@given(long_key)
def test_name_shape_long(key: str) -> None:
    check_name_shape(encode(key))


@given(any_key, any_key)
def test_injective(a: str, b: str) -> None:
    assume(a != b)
    assert encode(a) != encode(b)


def test_injective_exhaustive_over_small_alphabet() -> None:
    """Every key up to 6 characters over the characters the scheme treats specially."""
    names: dict[str, str] = {}
    for length in range(1, 7):
        for chars in itertools.product("a:-.%", repeat=length):
            key = "".join(chars)
            name = encode(key)
            assert name not in names, (key, names.get(name))
            names[name] = key
            assert decode(name) == key
            check_name_shape(name)


TARGETED = ["a:b", "a--b", "a-:b", "a:-b", "a%2Db", "a-b", "a::b", "a:--b", "a--:b", "a---b"]


def test_injective_targeted() -> None:
    names = [encode(k) for k in TARGETED]
    assert len(set(names)) == len(names)
    assert [decode(n) for n in names] == TARGETED


# Strings built from name characters and a few others, so that many of them are nearly names.
near_names = st.text(alphabet=st.sampled_from("aZ9._-%2DEe7F~/:é"), min_size=0, max_size=30)
ascii_strings = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=40)


def only_encodings_accepted(s: str) -> None:
    try:
        key = decode(s)
    except InvalidName:
        assert not is_hashed(s)
        return
    if key is None:
        assert is_hashed(s)
        assert "~" in s
    else:
        assert not is_hashed(s)
        assert encode(key) == s


@given(st.one_of(ascii_strings, near_names))
@example("a%2x")
@example("a-%2Db")
def test_decode_accepts_only_encodings(s: str) -> None:
    only_encodings_accepted(s)


@given(long_key, st.data())
def test_decode_rejects_damaged_hashed_names(key: str, data: st.DataObject) -> None:
    name = encode(key)
    assume(is_hashed(name))
    i = data.draw(st.integers(0, len(name) - 1))
    char = data.draw(st.sampled_from("a-%~.:Z0F"))
    damaged = name[:i] + char + name[i + 1 :]
    only_encodings_accepted(damaged)  # rejected, or still a name of some key


@given(st.from_regex(keys._FAST_KEY, fullmatch=True))
def test_fast_encode_agrees_with_general_path(key: str) -> None:
    name = keys._encode_slow(key)
    assert name == key.replace(":", "--")
    if len(name) <= MAX_NAME_BYTES:
        assert encode(key) == name
    else:
        assert encode(key) == keys._hashed_name(name, key)


@given(st.from_regex(keys._FAST_NAME, fullmatch=True))
def test_fast_decode_agrees_with_general_path(name: str) -> None:
    if len(name) <= MAX_NAME_BYTES:
        assert keys._decode_plain(name) == decode(name) == name.replace("--", ":")
    else:
        with pytest.raises(InvalidName):
            decode(name)


# --- hashed names --------------------------------------------------------------------------------


def test_length_threshold() -> None:
    plain = "k" * MAX_NAME_BYTES
    assert encode(plain) == plain
    assert not is_hashed(plain)
    hashed = encode("k" * (MAX_NAME_BYTES + 1))
    assert is_hashed(hashed)
    assert len(hashed) == MAX_NAME_BYTES
    # the threshold is on the name, not the key: each ':' takes 2 bytes
    assert encode("ab" + ":" * 99) == "ab" + "-" * 198
    assert is_hashed(encode("ab" + ":" * 100))


@given(long_key)
@settings(max_examples=300)
def test_hashed_name_layout(key: str) -> None:
    name = encode(key)
    assume(is_hashed(name))
    prefix, tilde, digest = name.rpartition("~")
    assert tilde == "~" and "~" not in prefix
    assert digest == hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    assert len(name) <= MAX_NAME_BYTES
    # the prefix is the start of the plain spelling, cut on a character boundary
    plain = keys._encode_slow(key)
    assert plain.startswith(prefix)
    assert len(plain) > MAX_NAME_BYTES
    start = keys._parse(prefix, prefix, whole=False)
    assert key.startswith(start)
    assert len(prefix) > MAX_NAME_BYTES - 1 - 32 - 12


def test_hashed_prefix_never_splits_an_escape_or_a_character() -> None:
    for pad in range(14):
        key = "x" * (150 + pad) + "🦞" * 20
        prefix = encode(key).rpartition("~")[0]
        start = keys._parse(prefix, prefix, whole=False)  # strict UTF-8: whole characters only
        assert key.startswith(start)
        assert len(prefix) >= 156
        assert len(start) == 150 + pad + (17 - pad) // 12
    for pad in range(3):
        key = "x" * (165 + pad) + ":" * 20
        prefix = encode(key).rpartition("~")[0]
        assert not re.search(r"(?<!-)-(--)*$", prefix), prefix  # never half of a '--'
        assert len(prefix) == 167 - (pad % 2 == 1)


def test_hashed_prefix_may_end_in_escaped_dash() -> None:
    """A '-' before the cut is %2D when the key's next character (beyond the cut) is ':'."""
    key = "x" * 164 + "-:" + "y" * 50
    name = encode(key)
    assert name.startswith("x" * 164 + "%2D~")
    assert decode(name) is None
    assert matches(name, key)


def test_matches() -> None:
    key = "agent:main:subagent:" + "nested:" * 40
    name = encode(key)
    assert is_hashed(name)
    assert matches(name, key)
    assert not matches(name, key + "x")
    assert not matches(name, key.upper())
    assert matches("a--b", "a:b")
    assert not matches("a--b", "a--b")
    assert not matches("", "")
    assert not matches("%ED%A0%80", "\ud800")


# --- rejected names ------------------------------------------------------------------------------

REJECTED = [
    ("a%2x", "incomplete escape"),
    ("a%2", "incomplete escape"),
    ("a%", "incomplete escape"),
    ("a---b", "run of 3"),
    ("a-----b", "run of 5"),
    ("%2e", "lower-case"),
    ("a%2db", "lower-case"),
    ("%41", "written literally"),
    ("a%3A", "written '--'"),
    ("--a", "starts with '-'"),
    ("----", "starts with '-'"),
    ("a%2Db", "written literally"),
    ("a-%2Db", "must be written %2D"),
    ("a%2D-b", "must be written %2D"),
    ("-a", "starts with '-'"),
    ("é", "non-ASCII"),
    ("a\u00a0b", "non-ASCII"),
    (".", "starts with '.'"),
    ("..", "starts with '.'"),
    (".hidden", "starts with '.'"),
    ("", "empty"),
    ("%FF", "not UTF-8"),
    ("%C3", "not UTF-8"),
    ("%ED%A0%80", "not UTF-8"),
    ("a/b", "'/'"),
    ("a\0b", "NUL"),
    ("a b", "' '"),
    ("a:b", "':'"),
    ("a~b", "~"),
    ("k" * 201, "longer than 200"),
    ("x" * 167 + "~" + "0" * 31, "32 lower-case hex"),
    ("x" * 167 + "~" + "A" * 32, "32 lower-case hex"),
    ("x" * 100 + "~" + "0" * 32, "156 to 167"),
    ("~" + "0" * 32, "156 to 167"),
    ("x" * 80 + "~" + "x" * 86 + "~" + "0" * 32, "more than one '~'"),
    ("x" * 166 + "é~" + "0" * 32, "non-ASCII"),
    ("%2E" + "x" * 150 + "%41~" + "0" * 32, "written literally"),
    ("." + "x" * 166 + "~" + "0" * 32, "starts with '.'"),
]


@pytest.mark.parametrize(("name", "reason"), REJECTED)
def test_rejected_names(name: str, reason: str | None) -> None:
    with pytest.raises(InvalidName, match=re.escape(reason) if reason else None) as excinfo:
        decode(name)
    assert "is not a session name" in str(excinfo.value)
    assert not is_hashed(name)


def test_well_formed_hashed_name_decodes_to_none() -> None:
    name = "x" * 167 + "~" + "0123456789abcdef" * 2
    assert decode(name) is None
    assert is_hashed(name)
    assert not matches(name, "x" * 300)  # well-formed, but no key here has this hash


# --- keys that cannot be stored ------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["", "\ud800", "a\udfffb", "\ud83d\udc1e", "agent:main:" + "\udc80"]
)
def test_unstorable_keys(key: str) -> None:
    with pytest.raises(InvalidKey) as excinfo:
        encode(key)
    assert not isinstance(excinfo.value, UnicodeError)
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__context__ is None or excinfo.value.__suppress_context__
    assert not matches(encode("a"), key)


@given(st.text(), st.characters(categories=["Cs"]), st.text())
def test_any_lone_surrogate_is_invalid_key(before: str, surrogate: str, after: str) -> None:
    with pytest.raises(InvalidKey, match="lone surrogate"):
        encode(before + surrogate + after)
