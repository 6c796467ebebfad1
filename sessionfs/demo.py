"""Realistic generated session stores, for the demo, the tests and the benchmark.

Keys follow openclaw's shapes (direct messages per channel, groups and topics, cron runs,
subagents, Matrix rooms with case-preserved ids); entries carry the fields real stores carry,
and ``entry_bytes`` pads them with a ``skillsSnapshot`` blob the way real entries grow
(openclaw#15145: 13 KB each; the seed's store: 80 MB for 650 sessions).
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Any

from sessionfs.atomic import atomic_write
from sessionfs.store.legacy import assemble, indent_member

__all__ = ["demo_key", "generate_entries", "make_entry", "write_legacy_store"]

_CHANNELS = ["telegram", "discord", "slack", "whatsapp", "signal", "matrix"]
_PEOPLE = ["james", "maria", "li.wei", "+4915112345678", "ana", "@kofi", "olu", "sven"]
_MODELS = [("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-5.1"), ("google", "gemini-3-pro")]
_BASE_MS = 1_767_225_600_000  # 2026-01-01


def demo_key(rng: random.Random, number: int) -> str:
    """A session key in one of openclaw's real shapes (unique by ``number``)."""
    agent = "main" if number % 7 else "ops"
    shape = number % 9
    channel = _CHANNELS[number % len(_CHANNELS)]
    if shape == 0:
        return f"agent:{agent}:cron:{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}:run:{number}"
    if shape == 1:
        return f"agent:{agent}:subagent:{uuid.UUID(int=rng.getrandbits(128))}"
    if shape == 2:
        return f"agent:{agent}:{channel}:group:-100{number:07d}:topic:{number % 40}"
    if shape == 3:
        return f"agent:{agent}:slack:channel:c0{number:06d}:thread:1712345678.{number:06d}"
    if shape == 4:
        return f"agent:{agent}:matrix:channel:!Room{number}AbC:matrix.org"
    return f"agent:{agent}:{channel}:direct:{_PEOPLE[number % len(_PEOPLE)]}{number}"


def make_entry(rng: random.Random, number: int, *, entry_bytes: int = 0) -> dict[str, Any]:
    """One entry with openclaw's common fields; padded to about ``entry_bytes`` when given."""
    provider, model = rng.choice(_MODELS)
    updated = _BASE_MS + number * 3_600_000 + rng.randrange(3_600_000)
    channel = _CHANNELS[number % len(_CHANNELS)]
    entry: dict[str, Any] = {
        "sessionId": str(uuid.UUID(int=rng.getrandbits(128))),
        "updatedAt": updated,
        "sessionStartedAt": updated - rng.randrange(86_400_000),
        "chatType": rng.choice(["direct", "group", "channel"]),
        "lastChannel": channel,
        "lastTo": str(rng.randrange(10**9)),
        "deliveryContext": {"channel": channel, "to": str(rng.randrange(10**9))},
        "modelProvider": provider,
        "model": model,
        "inputTokens": rng.randrange(200_000),
        "outputTokens": rng.randrange(20_000),
        "totalTokens": rng.randrange(220_000),
        "estimatedCostUsd": round(rng.random() * 3, 6),
        "compactionCount": rng.randrange(5),
        "thinkingLevel": rng.choice(["off", "low", "high"]),
        "label": rng.choice(["", "daily standup", "Einkaufsliste 🛒", "release 2026.3"]),
    }
    if entry_bytes > 0:
        filler = entry_bytes - 700
        skills: list[dict[str, str]] = []
        while filler > 0:
            text = f"Skill {len(skills)}: " + "use the tool carefully; " * rng.randrange(10, 60)
            skills.append({"name": f"skill-{len(skills)}", "description": text})
            filler -= len(text) + 60
        entry["skillsSnapshot"] = {"prompt": "You can use these skills.", "skills": skills,
                                   "version": 3}
    return entry


def generate_entries(count: int, *, seed: int = 1, entry_bytes: int = 0
                     ) -> dict[str, dict[str, Any]]:
    """``count`` distinct sessions, deterministic for a seed."""
    rng = random.Random(seed)
    return {demo_key(rng, number): make_entry(rng, number, entry_bytes=entry_bytes)
            for number in range(count)}


def write_legacy_store(folder: Path, entries: dict[str, dict[str, Any]]) -> Path:
    """Write ``sessions.json`` into ``folder`` exactly as openclaw would."""
    from sessionfs import jsonfmt

    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / "sessions.json"
    atomic_write(path, assemble((key, indent_member(jsonfmt.dumps(entry)))
                                for key, entry in entries.items()))
    return path
