"""JSON exactly as openclaw's Node.js writes and reads it.

openclaw writes its store with ``JSON.stringify(store, null, 2)``. To leave a file it did not
change byte for byte as it was, sessionfs has to produce the same bytes. Python's ``json`` and
plain ``orjson`` differ from JavaScript in number formatting, in key order (JavaScript puts
array-index keys first) and in lone surrogates. This package matches JavaScript
(:mod:`.numbers`, :mod:`.encode`, :mod:`.parse`, :mod:`.syntax`):

* :func:`stringify` / :func:`dumps`: ``JSON.stringify(value, null, indent)``. orjson does the
  work; its output is then checked with regular expressions and corrected where it would
  differ. Only the subtrees that orjson cannot do exactly go through a pure-Python encoder.
* :func:`loads`: fast, strict parsing of store files (orjson, then the standard library for
  what orjson refuses but ``JSON.parse`` accepts).
* :func:`parse_document`: the strictest parse, for bytes a user writes (no duplicate keys, depth
  limit, no BOM, UTF-8 errors reported by byte offset).
* :class:`PrefixChecker`: an incremental syntax check, so that a FUSE ``write()`` can fail as
  soon as the bytes written so far can no longer become valid JSON.
"""

from __future__ import annotations

from sessionfs.jsonfmt.encode import _fast as _fast
from sessionfs.jsonfmt.encode import _stringify_pure as _stringify_pure
from sessionfs.jsonfmt.encode import (
    dumps,
    has_index_key_member,
    in_js_key_order,
    is_array_index,
    stringify,
)
from sessionfs.jsonfmt.numbers import fix_numbers_compact, fix_numbers_indented, js_float
from sessionfs.jsonfmt.parse import loads, parse_document
from sessionfs.jsonfmt.syntax import DEFAULT_MAX_DEPTH, PrefixChecker

# The names these had when jsonfmt was one module (projection.py and the tests use them).
_fix_numbers_compact = fix_numbers_compact
_fix_numbers_indented = fix_numbers_indented
_js_float = js_float

__all__ = ["DEFAULT_MAX_DEPTH", "PrefixChecker", "dumps", "has_index_key_member", "in_js_key_order",
           "is_array_index", "loads", "parse_document", "stringify"]
