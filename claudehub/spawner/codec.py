"""kubernetes_asyncio models <-> JSON-shaped dicts, fast enough to run twice per spawn.

ClaudeSpawner turns KubeSpawner's ``V1Pod`` into a plain manifest, hardens it and turns it
back into a ``V1Pod``. kubernetes_asyncio's own (de)serializer parses every attribute's type
string with regular expressions on every call and needs an ``ApiClient`` (which opens a
connection pool); these functions cache each model's fields instead. Same results: models
drop ``None`` attributes, dicts keep their keys, dates become ISO strings.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from typing import Any

from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.client import models as k8s_models

_PRIMITIVES = frozenset({"object", "date", "datetime"})
_COERCE: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
# One shared configuration for every model built here (each model would otherwise make
# its own). No client-side validation: the API server validates what it receives.
_CONFIG = Configuration()
_CONFIG.client_side_validation = False


@functools.cache
def _converter(kind: str) -> Callable[[Any], Any]:
    """A function turning JSON data into a value of type ``kind`` (cached per type name)."""
    if kind.startswith("list["):
        item = _converter(kind[5:-1])
        return lambda data: None if data is None else [item(x) for x in data]
    if kind.startswith("dict("):
        value = _converter(kind[5:-1].split(",", 1)[1].strip())
        return lambda data: None if data is None else {k: value(v) for k, v in data.items()}
    if kind in _COERCE:
        target = _COERCE[kind]

        def coerce(data: Any) -> Any:
            if data is None or type(data) is target:
                return data
            # As kubernetes_asyncio does: a quantity given as 2.0 becomes "2.0".
            try:
                return target(data)
            except (TypeError, ValueError):
                return data

        return coerce
    if kind in _PRIMITIVES:
        return lambda data: data
    klass = getattr(k8s_models, kind)
    fields: list[tuple[str, str, Callable[[Any], Any]]] = []

    def build(data: Any) -> Any:
        if data is None:
            return None
        if not fields:  # filled on first use: some model types refer to themselves
            attribute_map: dict[str, str] = klass.attribute_map
            for attr, sub in klass.openapi_types.items():
                fields.append((attribute_map[attr], attr, _converter(sub)))
        kwargs = {attr: conv(data[key]) for key, attr, conv in fields if key in data}
        return klass(local_vars_configuration=_CONFIG, **kwargs)

    return build


def to_model(data: Any, kind: str) -> Any:
    """``data`` (JSON-shaped) as an instance of the model named ``kind`` (e.g. "V1Pod")."""
    return _converter(kind)(data)


def to_dict(obj: Any) -> Any:
    """A model (possibly holding plain dicts, as KubeSpawner's config does) as JSON data."""
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    if isinstance(obj, list | tuple):
        return [to_dict(item) for item in obj]
    if isinstance(obj, dict):
        return {key: to_dict(value) for key, value in obj.items()}
    if isinstance(obj, datetime.date):
        return obj.isoformat()
    attribute_map = obj.attribute_map
    out = {}
    for attr in obj.openapi_types:
        value = getattr(obj, attr)
        if value is not None:
            out[attribute_map[attr]] = to_dict(value)
    return out
