"""Tests for sessionfs.jsonfmt, with Node.js itself as the oracle for what JSON.stringify and
JSON.parse do. One long-lived ``node`` process answers batches of requests over a pipe."""

from __future__ import annotations

import importlib
import json
import math
import re
import re._parser as re_parser
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from sessionfs import jsonfmt
from sessionfs.errors import InvalidJSON
from sessionfs.jsonfmt import PrefixChecker, dumps, loads, parse_document, stringify

# --------------------------------------------------------------------------------------------
# The oracle
# --------------------------------------------------------------------------------------------

# Each request line is a JSON array of [text, indent] (indent null = compact); the answer line
# is an array of [true, JSON.stringify(JSON.parse(text), null, indent)] or [false, message].
NODE_SCRIPT = r"""
const rl = require('readline').createInterface({input: process.stdin, terminal: false});
rl.on('line', (line) => {
  const out = JSON.parse(line).map(([text, indent]) => {
    let value;
    try { value = JSON.parse(text); } catch (e) { return [false, String(e.message)]; }
    return [true, JSON.stringify(value, null, indent)];
  });
  process.stdout.write(JSON.stringify(out) + '\n');
});
"""


class Node:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["node", "-e", NODE_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def run(self, items: list[tuple[str, int | None]]) -> list[tuple[bool, str]]:
        """Answers for many (json_text, indent) requests in one round trip."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        # ensure_ascii: the pipe stays valid UTF-8 even for texts holding raw lone surrogates.
        self.proc.stdin.write(json.dumps(items, ensure_ascii=True).encode() + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "node died"
        return [tuple(x) for x in json.loads(line.decode("utf-8"))]  # type: ignore[misc]

    def stringify(self, text: str, indent: int | None = 2) -> str:
        ok, out = self.run([(text, indent)])[0]
        assert ok, f"node rejected {text!r}: {out}"
        return out

    def accepts(self, texts: list[str]) -> list[bool]:
        return [ok for ok, _ in self.run([(t, None) for t in texts])]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: it is the oracle for these tests")
    oracle = Node()
    yield oracle
    oracle.close()


ORACLE = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

INDEX_LIKE = ["0", "1", "2", "9", "10", "42", "007", "01", "-1", "1.5", " 1", "1e3", "4294967294",
              "4294967295", "4294967296", "9007199254740993", "99999999999"]  # fmt: skip
SPECIAL_CHARS = '"\\/\b\f\n\r\t\x00\x01\x1f\x7f\x80\u2028\u2029\ufeff\uffff'

any_char = st.one_of(
    st.characters(),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]),
    st.sampled_from(SPECIAL_CHARS),
    st.sampled_from("aé€🦞日"),
)
strings = st.one_of(
    st.lists(any_char, max_size=12).map("".join),
    st.text(alphabet=':"\\{}[], ', max_size=6),  # JSON syntax inside strings
)
keys = st.one_of(strings, st.sampled_from(INDEX_LIKE), st.integers(0, 2**33).map(str))
floats = st.floats(allow_nan=False, allow_infinity=False)
interesting_floats = st.sampled_from(
    [5.0, 1e-5, 1e-6, 1e-7, 1e15, 1e16, 1e20, 1e21, 1e22, 1.5e300, -0.0, 0.1, 2.0**60,
     5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 123456789012.5, 0.000123]
)  # fmt: skip
ints = st.one_of(
    st.integers(-(2**16), 2**16),
    st.integers(-(2**70), 2**70),
    st.integers(2**53 - 2, 2**53 + 2),
    st.integers(-(2**64), 2**64 + 1),
)


def string_text(s: str, ascii_only: bool) -> str:
    """A JSON string literal; lone surrogates can only travel as \\u escapes."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        ascii_only = True
    return json.dumps(s, ensure_ascii=ascii_only)


number_text = st.one_of(
    ints.map(str),
    floats.map(repr),
    interesting_floats.map(repr),
    st.from_regex(r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
)
scalar_text = st.one_of(
    number_text,
    st.builds(string_text, strings, st.booleans()),
    st.sampled_from(["true", "false", "null"]),
)
key_text = st.builds(string_text, keys, st.booleans())


def json_texts(max_leaves: int = 30) -> st.SearchStrategy[str]:
    """JSON texts (possibly with duplicate keys, lone-surrogate escapes, huge numbers)."""
    return st.recursive(
        scalar_text,
        lambda kids: st.one_of(
            st.lists(kids, max_size=6).map(lambda xs: "[" + ",".join(xs) + "]"),
            st.lists(st.tuples(key_text, kids), max_size=6).map(
                lambda kvs: "{" + ",".join(f"{k}:{v}" for k, v in kvs) + "}"
            ),
        ),
        max_leaves=max_leaves,
    )


# Python values (no NaN/Infinity: json.dumps could not hand them to node).
py_values = st.recursive(
    st.one_of(st.none(), st.booleans(), ints, floats, interesting_floats, strings),
    lambda kids: st.one_of(st.lists(kids, max_size=6), st.dictionaries(keys, kids, max_size=6)),
    max_leaves=30,
)

indents = st.sampled_from([2, 2, 2, None, None, 0, 1, 4, 10, 11])


def as_input(text: str) -> bytes | str:
    """Bytes when the text is valid UTF-8 (the usual case), else the str itself."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text


# --------------------------------------------------------------------------------------------
# stringify / dumps against node
# --------------------------------------------------------------------------------------------

REALISTIC_ENTRY: dict[str, Any] = {
    "sessionId": "0f5d59ee-034e-47d9-ac97-d383e6c022b8",
    "updatedAt": 1767225600000,
    "sessionStartedAt": 1767220000000,
    "sessionFile": "/home/u/.openclaw/agents/main/sessions/0f5d59ee.jsonl",
    "chatType": "direct",
    "systemSent": True,
    "abortedLastRun": False,
    "modelProvider": "anthropic",
    "model": "claude-sonnet-4-5",
    "inputTokens": 183211,
    "outputTokens": 9120,
    "totalTokens": 192331,
    "contextTokens": 200000,
    "estimatedCostUsd": 0.724155,
    "cacheRead": 170000,
    "lastChannel": "telegram",
    "lastTo": "12345",
    "lastThreadId": 42,
    "deliveryContext": {"channel": "telegram", "to": "12345", "accountId": "default"},
    "origin": {"label": "James \U0001f99e", "provider": "telegram", "from": "telegram:12345"},
    "skillsSnapshot": {
        "prompt": 'You can use these skills:\n- weather: "forecast" \\ tips\t\u2028 — naïve 日本',
        "skills": [{"name": "weather", "enabled": True, "ratio": 0.5, "weight": 1.0}],
        "version": 3,
    },
    "compactionCheckpoints": [],
    "pluginExtensions": {},
    "systemPromptReport": {"chars": 31234, "ratio": 1e-7, "big": 1e16, "tools": [{"n": 2.5}]},
}

# openclaw-store.md §2.1 and the brief: value -> what JSON.stringify writes.
KNOWN = [
    (5.0, "5"),
    (1e-5, "0.00001"),
    (1e-7, "1e-7"),
    (1e16, "10000000000000000"),
    (1e21, "1e+21"),
    (1.5e300, "1.5e+300"),
    (-0.0, "0"),
    (math.nan, "null"),
    (math.inf, "null"),
    (-math.inf, "null"),
    (12345678901234567890, "12345678901234567000"),
    (2**53, "9007199254740992"),
    (2**53 + 1, "9007199254740992"),
    (-(2**53) - 1, "-9007199254740992"),
    (2**1100, "null"),
    (-(2**1100), "null"),
    (True, "true"),
    (False, "false"),
    (None, "null"),
    ({}, "{}"),
    ([], "[]"),
    ("\u2028\x7f\x00\x1f", '"\u2028\x7f\\u0000\\u001f"'),
    ("\ud800", '"\\ud800"'),
    ("\udfff\ud800", '"\\udfff\\ud800"'),
    ("\ud83e\udd9e", '"\U0001f99e"'),  # a surrogate pair held as two code points is one char
    ({"b": 1, "1": 2, "0": 3}, '{\n  "0": 3,\n  "1": 2,\n  "b": 1\n}'),
    ({"a": [], "b": {}}, '{\n  "a": [],\n  "b": {}\n}'),
]


@pytest.mark.parametrize(("value", "expected"), KNOWN, ids=[repr(k)[:30] for k, _ in KNOWN])
def test_known_values(value: Any, expected: str) -> None:
    assert stringify(value) == expected
    assert jsonfmt._stringify_pure(value) == expected
    assert dumps(value) == expected.encode()
    if "\n" not in expected:  # nested: the same text, and the fast path's number fixes
        assert stringify([value], None) == f"[{expected}]"
        assert stringify({"k": [value]}) == '{\n  "k": [\n    ' + expected + "\n  ]\n}"


def test_known_values_agree_with_node(node: Node) -> None:
    finite = [(v, e) for v, e in KNOWN if not (isinstance(v, float) and not math.isfinite(v))]
    answers = node.run([(json.dumps(v), 2) for v, _ in finite])
    assert [out for _, out in answers] == [e for _, e in finite]


def test_realistic_entry(node: Node) -> None:
    text = json.dumps(REALISTIC_ENTRY, ensure_ascii=False)
    expected = node.stringify(text)
    assert stringify(REALISTIC_ENTRY) == expected
    assert dumps(REALISTIC_ENTRY) == expected.encode()
    assert stringify(REALISTIC_ENTRY, None) == node.stringify(text, None)
    assert jsonfmt._fast(REALISTIC_ENTRY, "  ") is not None  # the fast path served it
    store = {"agent:main:main": REALISTIC_ENTRY, "agent:main:cron:1": {"x": 1.5}}
    assert stringify(store) == node.stringify(json.dumps(store))


def test_fast_path_declines_what_it_cannot_do() -> None:
    assert jsonfmt._fast({"a": {"7": 1}}, "  ") is None  # array-index key
    assert jsonfmt._fast({"a": {"7": 1}}, "") is None
    assert jsonfmt._fast(["\ud800"], "  ") is None  # lone surrogate
    assert jsonfmt._fast([2**64], "  ") is None  # beyond orjson's integers
    assert jsonfmt._fast({"a": 1}, "    ") is None  # orjson only indents by two
    assert jsonfmt._fast({"a": "x"}, "  ") == b'{\n  "a": "x"\n}'


def test_mixed_paths_nested(node: Node) -> None:
    # An index key deep inside forces the slow path only along its path; siblings stay fast
    # and must be re-indented to their depth.
    value = {
        "a": [{"x": 1.0, "y": [1e16, {"z": "\ud800"}]}],
        "b": {"q": {"10": {"k": [5.0, 2**60]}, "2": [], "s": 1e-7}},
        "c": [[["deep", 0.1]]],
    }
    text = json.dumps(value)
    for indent in (2, None):
        assert stringify(value, indent) == node.stringify(text, indent)


def test_deep_values(node: Node) -> None:
    # orjson refuses to serialise beyond ~254 levels; the Python path takes over.
    value: Any = 1.5
    for i in range(400):
        value = [value] if i % 2 else {"k": value, "0": i}
    text = json.dumps(value)
    assert stringify(value) == node.stringify(text)
    assert stringify(value, None) == node.stringify(text, None)


@ORACLE
@given(text=json_texts(), indent=indents)
@example(text='{"b":1,"4294967294":2,"4294967295":3,"1":4,"01":5}', indent=2)
@example(text='["\\ud800\\udc00", "\\udc00\\ud800", "\\ud83e"]', indent=2)
@example(text="[1e400, -1e400, 1e-400, -0, 18446744073709551616, 0.1e1]", indent=2)
@example(text="[" + "9" * 400 + "]", indent=None)
@example(text='{"a":1,"a":2,"b":[{"c":1,"c":{"d":2.5}}]}', indent=2)
def test_stringify_of_parsed_text_matches_node(node: Node, text: str, indent: int | None) -> None:
    """stringify(loads(text)) is what JSON.stringify(JSON.parse(text), null, indent) writes."""
    value = loads(as_input(text))
    expected = node.stringify(text, indent)
    assert stringify(value, indent) == expected
    assert dumps(value, indent) == expected.encode()
    assert jsonfmt._stringify_pure(value, indent) == expected


@ORACLE
@given(value=py_values, indent=st.sampled_from([2, 2, None]))
@example(value={"a": "\ud83e\udd9e", "b": ["\ud83e", "\udd9e"]}, indent=2)
@example(value=[2**53 + 1, -(2**63), 2**64 - 1, 2**64, 1.7976931348623157e308], indent=2)
@example(value=[5e-324, -2.2250738585072014e-308, 1e-6, 1.5e-6, 123e18, 1.5e17], indent=None)
def test_stringify_of_python_values_matches_node(
    node: Node, value: Any, indent: int | None
) -> None:
    """Python values with the same meaning in JavaScript (json.dumps hands them over)."""
    expected = node.stringify(json.dumps(value), indent)
    assert stringify(value, indent) == expected
    assert jsonfmt._stringify_pure(value, indent) == expected


@ORACLE
@given(x=st.one_of(floats, interesting_floats))
def test_js_number_formatting(node: Node, x: float) -> None:
    assert jsonfmt._js_float(x) == node.stringify(repr(x))


def test_stringify_rejects_foreign_types() -> None:
    for bad in (object(), {1: "int key"}, {"a": {b"bytes": 1}}, [b"bytes"], {1j}):
        with pytest.raises(TypeError):
            stringify(bad)
        with pytest.raises(TypeError):
            jsonfmt._stringify_pure(bad)
    with pytest.raises(TypeError):
        stringify({}, indent="  ")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# loads
# --------------------------------------------------------------------------------------------


def test_loads_accepts_what_json_parse_accepts() -> None:
    assert loads(b'"\\ud800"') == "\ud800"
    assert loads('"\\udc00x"') == "\udc00x"
    assert loads("[1e400]") == [math.inf]
    # orjson reads integers beyond 64 bits as doubles, as JSON.parse does.
    assert loads(b"123456789012345678901234567890") == 1.2345678901234568e29
    assert stringify(loads(b"-123456789012345678901")) == "-123456789012345680000"
    assert stringify(loads(b"18446744073709551616")) == "18446744073709552000"
    assert loads(bytearray(b' {"a": [1, 2.5, true, null]} \n')) == {"a": [1, 2.5, True, None]}
    assert loads(memoryview(b"[]")) == []
    # Integers past the double range are Infinity for JSON.parse; whichever parser reads them
    # (orjson refuses these), loads gives what orjson gives for the others: a float.
    assert loads("1" * 5000) == math.inf
    assert loads(b"[-1" + b"0" * 400 + b', "\\ud800"]') == [-math.inf, "\ud800"]
    assert loads(b'["\\ud800", 18446744073709551615, 18446744073709551616]') == [
        "\ud800",
        2**64 - 1,
        2.0**64,
    ]
    assert loads(b'{"a":1,"a":2}') == {"a": 2}  # JSON.parse keeps the last one too


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b" \n\t ", "empty"),
        (b"NaN", "line 1 column 1"),
        (b"[1, NaN]", "line 1 column 5"),
        (b"[Infinity]", "line 1 column 2"),
        (b"-Infinity", "expected a digit after '-'"),
        (b"[1,]", "expected a JSON value, found ']' at line 1 column 4"),
        (b'{"a":1} x', "unexpected data after the JSON value, found 'x'"),
        (b'{"a":1}\n\n  }', "line 3 column 3"),
        (b"\xef\xbb\xbf{}", "byte order mark"),
        (b'["ok", "\xff"]', "not valid UTF-8 at byte 8"),
        (b"01", "line 1 column 2"),
        (b'{"a" 1}', "expected ':' after the key"),
        (b"[1", "unexpected end of data"),
        (b'"\t"', "control character U+0009"),
        (b'"\\x"', "invalid escape"),
        (b'"\\u12g4"', "hex digit"),
        (b"[" * 5000 + b"]" * 5000, "nesting too deep"),
        (b"[" * 100_000, "unexpected end of data"),
    ],
)
def test_loads_rejects(data: bytes, message: str) -> None:
    with pytest.raises(InvalidJSON) as exc:
        loads(data)
    assert message in str(exc.value)
    if data.isascii():
        with pytest.raises(InvalidJSON):
            loads(data.decode())


def test_loads_column_counts_characters() -> None:
    with pytest.raises(InvalidJSON, match=r"line 2 column 7 \(byte 10\)"):
        loads('[\n"éé", x]'.encode())


# Small alphabet of JSON bits so that random strings are often almost valid.
almost_json = st.lists(
    st.sampled_from(
        ['{', '}', '[', ']', '"', '"a"', '"\\u00e9"', '"\\ud800"', '\\', ',', ':', ' ', '\n',
         '0', '1', '-', '.', 'e', '+', '12', 'true', 'tru', 'null', 'NaN', 'x', '\x00', 'é']
    ),
    max_size=12,
).map("".join)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(st.one_of(almost_json, json_texts(8)), min_size=20, max_size=20))
def test_acceptance_matches_json_parse(node: Node, texts: list[str]) -> None:
    """loads, PrefixChecker and parse_document accept exactly what JSON.parse accepts."""
    for text, ok in zip(texts, node.accepts(texts), strict=True):
        data = as_input(text)
        try:
            loads(data)
            loads_ok = True
        except InvalidJSON:
            loads_ok = False
        assert loads_ok == ok, text
        if isinstance(data, str):
            continue
        checker = PrefixChecker()
        try:
            checker.feed(data)
            checker.finish()
            checker_ok = True
        except InvalidJSON:
            checker_ok = False
        assert checker_ok == ok, text
        try:
            parse_document(data)
            strict_ok = True
        except InvalidJSON as exc:
            strict_ok = False
            assert ok or "duplicate" not in str(exc)
        if strict_ok:
            assert ok
        elif ok:  # only duplicate keys make the strict parse refuse what JSON.parse takes
            with pytest.raises(InvalidJSON, match="duplicate key"):
                parse_document(data)


# --------------------------------------------------------------------------------------------
# parse_document
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"  \r\n", "empty"),
        (b"\xef\xbb\xbf{}", "byte order mark"),
        (b'{"a": "caf\xc3"}', "not valid UTF-8 at byte 10"),
        (b'{"a": "\xed\xa0\x80"}', "not valid UTF-8 at byte 7"),
        (b"\xff", "not valid UTF-8 at byte 0"),
        (b'{"a":1,"a":2}', 'duplicate key "a"'),
        ('{"x":[{"k":1},{"k":2,"j":{"é":1,"\\u00e9":2}}]}'.encode(), 'duplicate key "é"'),
        (b'{"\\ud800":1,"\\ud800":2}', "duplicate key"),
        (b"[NaN]", "line 1 column 2"),
        (b'{"a":Infinity}', "line 1 column 6"),
        (b"[" * 513 + b"]" * 513, "nesting deeper than 512 levels at line 1 column 513"),
        (b"[" * 100_000, "nesting deeper than 512"),
        (b'{"a":' * 100_000, "nesting deeper than 512"),
        (b'{"a":1}{}', "unexpected data after the JSON value"),
    ],
)
def test_parse_document_rejects(data: bytes, message: str) -> None:
    with pytest.raises(InvalidJSON) as exc:
        parse_document(data)
    assert message in str(exc.value)


def test_parse_document_accepts() -> None:
    assert parse_document(b"[" * 512 + b"]" * 512) is not None
    assert parse_document(b'{"a":[[1]]}', max_depth=3) == {"a": [[1]]}
    with pytest.raises(InvalidJSON, match="deeper than 2"):
        parse_document(b'{"a":[[1]]}', max_depth=2)
    # Quotes, colons and backslashes inside strings are not members.
    tricky = b'{"a\\\\":"b\\":c","d\\"":"x:y\\\\","e":{"\\\\\\":":1},"f":"\\":\\\\\\":"}'
    assert parse_document(tricky) == json.loads(tricky)
    for text in [b'{"a":":"}', b'{":":":",":a" : "[{:", "b":"\\":"}', b'[":", {"x": "::"}]']:
        assert parse_document(text) == json.loads(text)
    assert parse_document(b'"\\ud800"') == "\ud800"
    assert parse_document(b'{"a": 1e400}') == {"a": math.inf}
    assert parse_document(b'{"a": 1' + b"0" * 400 + b"}") == {"a": math.inf}  # as JSON.parse
    assert parse_document(bytearray(b" 1 ")) == 1
    doc = json.dumps(REALISTIC_ENTRY, indent=2, ensure_ascii=False).encode()
    assert parse_document(doc) == REALISTIC_ENTRY


@settings(max_examples=150, deadline=None)
@given(text=json_texts())
def test_parse_document_duplicates(text: str) -> None:
    data = as_input(text)
    assume(isinstance(data, bytes))
    pairs_seen: list[list[str]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        pairs_seen.append([k for k, _ in pairs])
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    has_duplicates = any(len(set(ks)) != len(ks) for ks in pairs_seen)
    if has_duplicates:
        with pytest.raises(InvalidJSON, match="duplicate key"):
            parse_document(data)
    else:
        assert stringify(parse_document(data)) == stringify(loads(data))


# --------------------------------------------------------------------------------------------
# PrefixChecker
# --------------------------------------------------------------------------------------------


def feed_all(chunks: list[bytes], max_depth: int = 512) -> PrefixChecker:
    checker = PrefixChecker(max_depth=max_depth)
    for chunk in chunks:
        checker.feed(chunk)
    return checker


INCOMPLETE = [
    b"",
    b"   \n",
    b'{"a": tr',
    b'{"a": [1, {"b": nul',
    b"1.",
    b"1e",
    b"-",
    b"-0.5E+",
    b'"\\',
    b'"\\u12',
    b'{"k\\"ey',
    b'{"a":1} \n\t',
    b"[" * 512,
    '"é'.encode()[:-1],  # half of a two-byte character
    '["\U0001f99e'.encode()[:-1],
    b'"\xed\x9f',  # ED 9F is the start of U+D7C0..U+D7FF, still fine
]


@pytest.mark.parametrize("data", INCOMPLETE, ids=repr)
def test_prefix_checker_accepts_incomplete(data: bytes) -> None:
    checker = feed_all([data])
    assert checker.offset == len(data)
    # Byte by byte is the same.
    assert feed_all([data[i : i + 1] for i in range(len(data))]).offset == len(data)


BROKEN = [
    (b"{b", 1),
    (b'{"a" 1', 5),
    (b'{"a":1}}', 7),
    (b'{"a":1} x', 8),
    (b"[1,]", 3),
    (b"tru e", 3),
    (b"01", 1),
    (b"[1 2]", 3),
    (b'{"a":1,}', 7),
    (b"nul1", 3),
    (b"-a", 1),
    (b"1.e", 2),
    (b'"\\x', 2),
    (b'"\\u12x', 5),
    (b'"a\x01', 2),
    (b"[}", 1),
    (b"{]", 1),
    (b",", 0),
    (b"\xff", 0),
    (b'"\xc3x', 1),  # a two-byte character cut by an ASCII byte
    (b'"\xed\xa0', 1),  # the start of a UTF-16 surrogate: can never become valid
    (b'"\xf4\x90', 1),  # beyond U+10FFFF
    (b'"\xc0', 1),  # overlong
    (b"[" * 513, 512),
    (b"NaN", 0),
    (b"[-Infinity]", 2),
    (b'"ok" \xc3\xa9', 5),
]


@pytest.mark.parametrize(("data", "at"), BROKEN, ids=[repr(d)[:40] for d, _ in BROKEN])
def test_prefix_checker_rejects(data: bytes, at: int) -> None:
    checker = PrefixChecker()
    with pytest.raises(InvalidJSON, match=rf"\(byte {at}\)"):
        checker.feed(data)
    with pytest.raises(InvalidJSON):  # stays failed
        checker.feed(b" ")
    with pytest.raises(InvalidJSON):
        checker.finish()
    # Byte by byte it fails at the same byte, on the first feed that makes it impossible
    # (a UTF-8 lead byte alone is still fine: the next byte decides).
    checker = PrefixChecker()
    for i in range(at):
        checker.feed(data[i : i + 1])
    with pytest.raises(InvalidJSON, match=rf"\(byte {at}\)"):
        for i in range(at, len(data)):
            checker.feed(data[i : i + 1])


def test_prefix_checker_messages_and_lines() -> None:
    checker = PrefixChecker()
    checker.feed(b'{\n  "a": 1,\n')
    with pytest.raises(InvalidJSON, match=r"expected a string key, found '\]' at line 3 column 3"):
        checker.feed(b"  ]")
    checker = PrefixChecker(max_depth=3)
    checker.feed(b"[[[")
    assert checker.depth == 3
    with pytest.raises(InvalidJSON, match="nesting deeper than 3 levels"):
        checker.feed(b"{")


def test_prefix_checker_finish() -> None:
    for complete in (b"1", b"-0.5e+3", b' {"a": [true, null]} ', b'"x"', b"[]"):
        checker = feed_all([complete])
        assert checker.complete
        checker.finish()
    for incomplete, message in [
        (b"", "empty"),
        (b" ", "empty"),
        (b"[1", "unexpected end of data at line 1 column 3 \\(byte 2\\)"),
        (b"1.", "unexpected end"),
        ('"é'.encode()[:-1], "truncated UTF-8"),
    ]:
        checker = feed_all([incomplete])
        assert not checker.complete
        with pytest.raises(InvalidJSON, match=message):
            checker.finish()


def test_prefix_checker_split_utf8_byte_by_byte() -> None:
    data = '{"é": "naïve \U0001f99e 日本"}'.encode()
    checker = PrefixChecker()
    for i in range(len(data)):
        checker.feed(data[i : i + 1])
    checker.finish()
    assert checker.offset == len(data)


def tokens_of(text: str) -> list[str]:
    """Split a compact JSON text made by json_texts() into tokens (strings kept whole)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif c in "{}[],:":
            out.append(c)
            i += 1
        else:
            j = i
            while j < len(text) and text[j] not in "{}[],:":
                j += 1
            out.append(text[i:j])
            i = j
    return out


@st.composite
def documents(draw: st.DrawFn) -> tuple[list[str], list[bytes]]:
    """A valid UTF-8 JSON document as tokens (with random whitespace), and random chunks."""
    text = draw(json_texts().filter(lambda t: as_input(t) != t))
    ws = st.sampled_from(["", "", "", " ", "\n", "\t", "\r\n  "])
    toks = [draw(ws)]
    for tok in tokens_of(text):
        toks += [tok, draw(ws)]
    data = "".join(toks).encode()
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return toks, chunks


@settings(max_examples=300, deadline=None)
@given(doc=documents())
def test_prefix_checker_never_rejects_a_valid_document(doc: tuple[list[str], list[bytes]]) -> None:
    _, chunks = doc
    checker = feed_all(chunks)
    checker.finish()
    assert checker.offset == sum(map(len, chunks))


BAD_INSERTS = [b"#", b"'", b"x", b"\x00", b"\xff", b",,", b"::", b"\xc3(", b"\x7f"]


@settings(max_examples=300, deadline=None)
@given(doc=documents(), data=st.data())
def test_prefix_checker_rejects_an_injected_error(
    doc: tuple[list[str], list[bytes]], data: st.DataObject
) -> None:
    toks, _ = doc
    at = data.draw(st.integers(0, len(toks)), label="token boundary")
    bad = data.draw(st.sampled_from([*BAD_INSERTS, b"]", b"}"]), label="inserted")
    head = "".join(toks[:at]).encode()
    tail = "".join(toks[at:]).encode()
    checker = PrefixChecker()
    checker.feed(head)  # still a valid prefix
    if bad in BAD_INSERTS:  # impossible right where they are: fails at once
        with pytest.raises(InvalidJSON):
            checker.feed(bad)
    else:  # an extra closing bracket: fails at the latest once the brackets cannot balance
        with pytest.raises(InvalidJSON):
            checker.feed(bad + tail)
    # Fed whole or in pieces, the broken document is always rejected by feed itself.
    broken = head + bad + tail
    with pytest.raises(InvalidJSON):
        feed_all([broken])
    with pytest.raises(InvalidJSON):
        feed_all([broken[i : i + 7] for i in range(0, len(broken), 7)])


def test_prefix_checker_is_incremental() -> None:
    # A long string and a long number fed in small pieces: linear, not quadratic.
    checker = PrefixChecker()
    checker.feed(b'["')
    for _ in range(20_000):
        checker.feed(b"abcdefghi\\n")
    checker.feed(b'", 1')
    for _ in range(20_000):
        checker.feed(b"1234567")
    checker.feed(b"]")
    checker.finish()
    assert checker.offset == 3 + 20_000 * 11 + 3 + 20_000 * 7 + 1


def _regex_opcodes(pattern: re.Pattern[Any]) -> set[str]:
    """Every opcode name in a compiled pattern's parse tree."""
    names: set[str] = set()
    stack: list[Any] = [list(re_parser.parse(pattern.pattern, pattern.flags))]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            if len(item) == 2 and hasattr(item[0], "name"):
                names.add(item[0].name)
            stack.extend(item)
        elif isinstance(item, re_parser.SubPattern):
            stack.append(list(item))
    return names


def test_no_possessive_quantifiers_or_atomic_groups() -> None:
    # They match wrongly before CPython 3.11.5 (gh-106052), and Debian 12's python3 is 3.11.2:
    # the mount's syntax check refused valid writes there ("expected a string key").
    modules = [importlib.import_module(f"sessionfs.jsonfmt.{name}")
               for name in ("numbers", "encode", "parse", "syntax")]
    patterns = [value for module in modules for value in vars(module).values()
                if isinstance(value, re.Pattern)]
    assert len(patterns) >= 10
    for pattern in patterns:
        used = _regex_opcodes(pattern) & {"POSSESSIVE_REPEAT", "ATOMIC_GROUP"}
        assert not used, f"{pattern.pattern!r} uses {used}"


def test_number_fixing_and_syntax_check_stay_linear_on_big_inputs() -> None:
    # What the possessive quantifiers were there for: 1 MB that never closes a string, or is
    # one long run of members, takes well under a second, not minutes (quadratic).
    unterminated = b'"' + b'a\\"' * 350_000
    members = b'"k": 1.5, ' * 100_000
    started = time.monotonic()
    assert jsonfmt._fix_numbers_compact(unterminated + b"1.5") == unterminated + b"1.5"
    big = [1.5, 12345678901234567, 'x"y', {"a": 0.1}] * 50_000
    assert stringify(big) == jsonfmt._stringify_pure(big)
    for data in (unterminated, b"{" + members, b"[" + b"1.5, " * 200_000):
        checker = PrefixChecker()
        checker.feed(b"[" + data if data is unterminated else data)
        with pytest.raises(InvalidJSON):
            checker.finish()
    assert time.monotonic() - started < 10
