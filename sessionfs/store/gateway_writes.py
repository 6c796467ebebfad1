"""Writes to a SQLite-era store: each one a call to the live openclaw Gateway (never SQL).

openclaw's Gateway is the single owner of the database; it changes sessions by *intent*
(``sessions.patch`` takes a closed list of parameters, not an entry). So a saved entry is
turned into intents by diffing it against the entry the writer was SHOWN (the *base*), not the
Gateway's current one: a field someone else changed meanwhile is not in the diff, so it is not
reverted (openclaw applies an intent to the fresh row, merging different fields).

The mapping (``../shared/context/openclaw-gateway-rpc.md`` §3.3, §7, openclaw 2026.9.6):

* same-named keys (:data:`SAME_NAME`); a removed key is ``null`` (cleared);
* ``pinnedAt`` / ``archivedAt`` / ``markedUnreadAt`` added or removed: ``pinned`` /
  ``archived`` / ``unread`` (openclaw picks the timestamp); ``lastReadAt`` set: ``unread:false``;
* ``modelOverride`` / ``providerOverride``: ``model: "provider/model"`` or ``null``;
* ``agentStatus`` removed: ``statusNote: null``.

The fields openclaw derives alongside (``archiveReason`` with ``archivedAt``, ``model`` with the
override, …) may change with them. Any other change refuses the whole save (EPERM,
:class:`FieldNotEditable`, naming the field and what to do instead): nothing is sent. A save
that changes nothing patchable sends nothing, as every patch moves ``updatedAt``.

Guards: ``expectedSessionId`` always, ``expectedLifecycleRevision`` when the base has one; and,
since a reset of an imported entry (no revision) keeps its ``sessionId``, the base is compared
with the stored entry first: a different ``sessionId`` or ``lifecycleRevision`` means the
session was reset or replaced since it was read (ESTALE, nothing sent).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sessionfs.errors import (
    FieldNotEditable,
    GatewayRefused,
    NotPermitted,
    SessionChanged,
    SessionExists,
    SessionNotFound,
)
from sessionfs.gateway import GatewayClient

__all__ = ["SAME_NAME", "GatewayWriter", "plan_patch"]

Entry = dict[str, Any]

#: Entry keys that ``sessions.patch`` takes under the same name.
SAME_NAME = frozenset((
    "label", "autoLabel", "icon", "color", "category", "boardFace", "boardPresentation",
    "thinkingLevel", "fastMode", "toolOverrides", "verboseLevel", "traceLevel", "reasoningLevel",
    "responseUsage", "elevatedLevel", "execHost", "execNode", "permissionMode", "sandboxMode",
    "sendPolicy", "groupActivation", "contextWindow", "completionOwnerSessionKey",
    "inheritedToolPolicyVersion", "inheritedToolAllow", "inheritedToolDeny"))
#: Toggles: the timestamp key, the intent, what openclaw changes along with turning it (on, off).
TOGGLES: dict[str, tuple[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "pinnedAt": ("pinned", ((), ())),
    "archivedAt": ("archived", (("archiveReason", "archivedBy", "pinnedAt"),
                                ("archiveReason", "archivedBy"))),
    "markedUnreadAt": ("unread", ((), ("lastReadAt", "agentStatus"))),
}
MODEL_KEYS = ("providerOverride", "modelOverride")
#: What openclaw changes by itself when the model override is set or cleared.
MODEL_EFFECTS = ("modelOverrideSource", "modelOverrideRouteResolution", "liveModelSwitchPending",
                 "model", "modelProvider", "contextTokens", "agentRuntimeOverride")
#: sessions.create parameters taken from a new entry.
CREATE_FIELDS = ("label", "displayName", "category")

_ADVICE = {
    "displayName": "openclaw derives it and lets no client change it (it can only be given when "
                   "a session is created); set \"label\", the name openclaw shows first",
    "updatedAt": "openclaw sets it on every change; leave it as it is",
    "sessionId": "it names the session's transcript; only openclaw changes it (a reset or "
                 "/new in the chat)",
    "delivery": "openclaw's routing of replies; change it from the chat's channel",
    "model": "it is the model openclaw last ran; set \"modelOverride\" and "
             "\"providerOverride\" to choose the model",
    "modelProvider": "it is the provider openclaw last ran; set \"providerOverride\" and "
                     "\"modelOverride\" to choose the model",
    "parentSessionKey": "spawn lineage is no longer patchable in openclaw",
    "spawnedBy": "spawn lineage is no longer patchable in openclaw",
}
_DEFAULT_ADVICE = ("openclaw's sessions.patch does not take it (only its own runs change it); "
                   "leave it as it is")


def _same(a: Any, b: Any) -> bool:
    """JSON equality (``1`` and ``true`` differ, key order does not matter)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _refuse(key: str, field: str, change: str) -> FieldNotEditable:
    advice = _ADVICE.get(field)
    if advice is None and ("token" in field.lower() or field.lower().endswith("cost")
                           or field.startswith("estimated")):
        advice = "openclaw counts usage itself; leave it as it is"
    return FieldNotEditable(f"session {key!r}: \"{field}\" cannot be {change} through the "
                            f"openclaw Gateway: {advice or _DEFAULT_ADVICE}; nothing was saved",
                            field=field)


def plan_patch(key: str, base: Entry, new: Entry) -> dict[str, Any]:
    """The ``sessions.patch`` mutations that turn ``base`` into ``new`` (empty: nothing to send).

    :raises FieldNotEditable: a changed key no intent expresses (the first one, by name).
    """
    changed = [k for k in (*base, *(k for k in new if k not in base))
               if (k in base) != (k in new) or (k in base and not _same(base[k], new[k]))]
    patch: dict[str, Any] = {}
    excused: set[str] = set()
    for field in changed:
        if field in SAME_NAME:
            patch[field] = new.get(field)
    for stamp, (intent, effects) in TOGGLES.items():
        if stamp not in changed:
            continue
        if stamp in base and stamp in new:
            raise FieldNotEditable(
                f"session {key!r}: \"{stamp}\" is the time openclaw chose; remove it to turn "
                f"\"{intent}\" off or add it (any value) to turn it on; nothing was saved",
                field=stamp)
        patch[intent] = stamp in new
        excused.update(effects[0] if stamp in new else effects[1])
    if "lastReadAt" in changed and "lastReadAt" in new and "unread" not in patch:
        patch["unread"] = False  # "mark read": openclaw stamps lastReadAt itself
        excused.update(("markedUnreadAt", "agentStatus"))
    if patch.get("archived") is True:
        patch.pop("pinned", None)  # archiving unpins; openclaw refuses to pin an archived one
    if any(field in changed for field in MODEL_KEYS):
        provider, model = new.get("providerOverride"), new.get("modelOverride")
        if provider is None and model is None:
            patch["model"] = None
        elif isinstance(provider, str) and isinstance(model, str) and provider and model:
            patch["model"] = f"{provider}/{model}"
        else:
            raise FieldNotEditable(
                f"session {key!r}: set both \"providerOverride\" and \"modelOverride\" (openclaw "
                "takes the model as provider/model) or remove both to clear the override; "
                "nothing was saved", field="modelOverride")
        excused.update(MODEL_EFFECTS)
    if "agentStatus" in changed and "agentStatus" not in excused:
        if "agentStatus" in new:
            raise FieldNotEditable(
                f"session {key!r}: \"agentStatus\" can only be removed here (openclaw's "
                "statusNote:null); its note is set by the agent; nothing was saved",
                field="agentStatus")
        patch["statusNote"] = None
        excused.add("agentStatus")
    for field in changed:
        if field in SAME_NAME or field in TOGGLES or field in MODEL_KEYS or field in excused:
            continue
        if field == "lastReadAt" and "unread" in patch:
            continue
        raise _refuse(key, field, "removed" if field not in new else
                      "added" if field not in base else "changed")
    return patch


class GatewayWriter:
    """The write side of one agent's SQLite store, through its state dir's Gateway client."""

    def __init__(self, client: GatewayClient, agent: str,
                 read_current: Callable[[str], Entry]) -> None:
        self.client = client
        self.agent = agent
        self._read_current = read_current  # the stored entry now (SQLite, mode=ro)

    def main_key(self) -> str:
        return f"agent:{self.agent}:main"

    def _current(self, key: str) -> Entry:
        return self._read_current(key)

    def _guards(self, key: str, base: Entry, current: Entry) -> dict[str, Any]:
        """``expected*`` guards from the base, after checking it against the stored entry."""
        for field in ("sessionId", "lifecycleRevision"):
            if not _same(base.get(field), current.get(field)):
                what = "replaced (a new sessionId)" if field == "sessionId" else \
                    "reset (a new lifecycleRevision)"
                raise SessionChanged(
                    f"session {key!r} was {what} by openclaw after it was read; nothing was "
                    "saved: read it again and redo the change")
        guards: dict[str, Any] = {"key": key, "agentId": self.agent}
        if isinstance(base.get("sessionId"), str):
            guards["expectedSessionId"] = base["sessionId"]
        if base.get("lifecycleRevision") is not None:
            guards["expectedLifecycleRevision"] = base["lifecycleRevision"]
        return guards

    def put(self, key: str, entry: Entry, base: Entry | None = None) -> bool:
        """Save ``entry`` over ``base`` (what the writer was shown; default: the stored entry).
        Returns False when nothing patchable changed (nothing sent). A new key is created."""
        try:
            current = self._current(key)
        except SessionNotFound:
            self.create(key, entry)
            return True
        base = current if base is None else base
        if entry.get("sessionId") != base.get("sessionId") and "sessionId" in entry:
            raise _refuse(key, "sessionId", "changed")
        patch = plan_patch(key, base, entry)
        if not patch:
            return False
        self.client.require_owner()  # EROFS with the reason before anything else is said
        params = self._guards(key, base, current)
        params.update(patch)
        self.client.call("sessions.patch", params)
        return True

    def create(self, key: str, entry: Entry | None = None) -> str:
        """``sessions.create`` (then one patch of the rest of ``entry``); returns the key.

        :raises SessionExists: the key is a session (openclaw's create would adopt it).
        """
        try:
            self._current(key)
        except SessionNotFound:
            pass
        else:
            raise SessionExists(f"session {key!r} already exists (openclaw's create would "
                                "take it over): edit its meta.json instead")
        entry = entry or {}
        extra = {field: value for field, value in entry.items()
                 if field not in CREATE_FIELDS}
        patch = plan_patch(key, {}, extra) if extra else {}  # refused before anything is sent
        params: dict[str, Any] = {"key": key, "agentId": self.agent}
        params.update({field: entry[field] for field in CREATE_FIELDS if field in entry})
        self.client.require_owner()
        created = self.client.call("sessions.create", params)
        made = created["key"] if isinstance(created.get("key"), str) else key
        if patch:
            session_id = created.get("sessionId")
            params = {"key": made, "agentId": self.agent, **patch}
            if isinstance(session_id, str):
                params["expectedSessionId"] = session_id
            try:
                self.client.call("sessions.patch", params)
            except GatewayRefused as exc:  # a bad value: take the new session back, whole
                undo: dict[str, Any] = {"key": made, "agentId": self.agent}
                if isinstance(session_id, str):
                    undo["expectedSessionId"] = session_id
                self.client.call("sessions.delete", undo)
                raise GatewayRefused(exc.method, exc.code, exc.reason,
                                     f"{exc.message} (session {made!r} was not created)"
                                     ) from None
        return made

    def check_delete(self, key: str) -> None:
        """:raises NotPermitted: a session openclaw never deletes (the agent's main one)."""
        if key == self.main_key():
            raise NotPermitted(f"session {key!r} is the agent's main session, which openclaw "
                               "never deletes (start it afresh from the chat with /new or "
                               "/reset instead)")

    def delete(self, key: str) -> None:
        """``sessions.delete``, guarded by the stored sessionId; the main session is refused.
        openclaw archives the transcript (``<sessionId>.jsonl.deleted.<time>….zst``) and
        cannot undo a delete."""
        self.check_delete(key)
        current = self._current(key)  # SessionNotFound: ENOENT
        params: dict[str, Any] = {"key": key, "agentId": self.agent}
        if isinstance(current.get("sessionId"), str):
            params["expectedSessionId"] = current["sessionId"]
        self.client.require_owner()
        try:
            self.client.call("sessions.delete", params)
        except GatewayRefused as exc:
            if "main session" in exc.message:
                raise NotPermitted(str(exc)) from None
            raise

    def rename(self, old: str, new: str) -> None:
        raise NotPermitted(
            f"session {old!r} cannot be moved to {new!r}: openclaw has no way to change a "
            "session's key; its rename is the label: set \"label\" in meta.json")
