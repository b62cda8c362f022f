"""Model ids and the model allowlist: one rule for every side that compares a model with it.

The hub configurations check an operator's list when they start, the hub's classes check a
class's list, and the key proxy compares the ``model`` of every request with the list before
anything goes upstream. All of them use the functions here, so no spelling slips through one
side that another would refuse.

A **model id** is what the Anthropic API names a model: 1 to :data:`MAX_MODEL_LENGTH`
characters of lowercase ASCII letters, digits, ``.`` and ``-``, starting with a letter or a
digit (``claude-haiku-4-5``, ``claude-sonnet-4-5-20250929``). A request whose model is not
one (upper case, surrounding white space, anything else) is refused as malformed; nothing is
trimmed or lowered, so the upstream only ever sees the exact string that was compared.

An **allowlist entry** is one of:

- a model id, which allows exactly that id and its dated snapshots: ``claude-haiku-4-5``
  allows ``claude-haiku-4-5`` and ``claude-haiku-4-5-20251001`` (the id, ``-``, eight digits),
  and nothing else (not ``claude-haiku-4-5-latest``, not ``claude-haiku-4-5x``);
- a pattern with ``*`` (any characters) or ``?`` (one character), such as
  ``claude-haiku-*``. A pattern must start with ``claude-`` written out and must not allow
  the Opus, Sonnet and Haiku families all at once: ``*`` or ``claude-*`` would allow every
  model, which is what an empty list says on purpose, so such a pattern is a mistake and is
  refused when the configuration is read.

An empty list allows every model.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from typing import TypeGuard

#: The longest model id accepted (the API's own ids are under 40 characters).
MAX_MODEL_LENGTH = 128

_MODEL_ID = re.compile(r"[a-z0-9][a-z0-9.\-]*")
_SNAPSHOT = re.compile(r"-[0-9]{8}")
_PATTERN = re.compile(r"claude-[a-z0-9.\-*?]+")
_WILDCARDS = frozenset("*?")

#: One model of each family: a pattern that allows all of them allows every model.
FAMILY_PROBES = ("claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5")

#: What a model id looks like, for error messages.
MODEL_ID_RULE = (
    f"lowercase letters, digits, '.' and '-', at most {MAX_MODEL_LENGTH} characters, "
    "e.g. claude-haiku-4-5"
)


def is_model_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a well-formed model id (see the module's rule)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_MODEL_LENGTH
        and _MODEL_ID.fullmatch(value) is not None
    )


def is_pattern(entry: str) -> bool:
    """Whether an allowlist entry is a pattern (has ``*`` or ``?``) rather than a model id."""
    return any(c in _WILDCARDS for c in entry)


def shown(value: object, limit: int = 60) -> str:
    """``value`` as an error message may quote it: repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_entry(entry: object, where: str) -> str:
    """Check one allowlist entry and return it; :class:`ValueError` naming ``where`` if bad.

    Only white space around the entry is dropped (configuration files and comma-separated
    variables carry it); everything else must already be a model id or a safe pattern.
    """
    if not isinstance(entry, str):
        raise ValueError(f"{where}: {shown(entry)} is not a model name")
    name = entry.strip()
    if not name:
        raise ValueError(f"{where}: an empty model name")
    if len(name) > MAX_MODEL_LENGTH:
        raise ValueError(f"{where}: {shown(name)} is longer than {MAX_MODEL_LENGTH} characters")
    if not is_pattern(name):
        if not is_model_id(name):
            raise ValueError(
                f"{where}: {shown(name)} is not a model id ({MODEL_ID_RULE}; patterns use * and ?)"
            )
        return name
    if _PATTERN.fullmatch(name) is None:
        raise ValueError(
            f"{where}: the pattern {shown(name)} must start with 'claude-' written out and use "
            "only lowercase letters, digits, '.', '-', '*' and '?'"
        )
    if all(fnmatch.fnmatchcase(probe, name) for probe in FAMILY_PROBES):
        raise ValueError(
            f"{where}: the pattern {shown(name)} would allow every model; list the models "
            "(or leave the list empty to allow every model on purpose)"
        )
    return name


def check_allowlist(entries: Iterable[object], where: str) -> list[str]:
    """Check every entry (:func:`check_entry`); return them, duplicates dropped, in order."""
    if isinstance(entries, str | bytes):
        raise ValueError(f"{where} must be a list of model names, not {shown(entries)}")
    return list(dict.fromkeys(check_entry(e, where) for e in entries))


def check_model_ids(entries: Iterable[object], where: str) -> list[str]:
    """Like :func:`check_allowlist`, for lists that name models to offer (no patterns)."""
    out = check_allowlist(entries, where)
    for name in out:
        if is_pattern(name):
            raise ValueError(
                f"{where}: {shown(name)} is a pattern; this list names the models learners "
                "choose from, so write each model id out"
            )
    return out


class Allowlist:
    """A checked allowlist, compiled for the per-request comparison (:meth:`allows`)."""

    __slots__ = ("_exact", "_patterns", "entries")

    def __init__(self, entries: Sequence[str] = ()) -> None:
        #: The entries as configured (already checked with :func:`check_allowlist`).
        self.entries: tuple[str, ...] = tuple(entries)
        self._exact = frozenset(e for e in self.entries if not is_pattern(e))
        self._patterns = tuple(e for e in self.entries if is_pattern(e))

    def allows(self, model: str) -> bool:
        """Whether the model id ``model`` may be used (an empty list allows every model).

        ``model`` must be a model id (:func:`is_model_id`); the caller refuses anything else
        as malformed first.
        """
        if not self.entries or model in self._exact:
            return True
        # a dated snapshot of an allowed alias: <alias>-YYYYMMDD
        if len(model) > 9 and _SNAPSHOT.fullmatch(model, len(model) - 9):
            if model[:-9] in self._exact:
                return True
        return any(fnmatch.fnmatchcase(model, p) for p in self._patterns)
