"""This plugin's key/value store: shared by its instances, kept across reloads."""

from __future__ import annotations

import json as _json
from typing import Any, List, Optional, Tuple, Union

from wit_world.imports import host as _host

from . import _bytes, _call


def get(key: str) -> Optional[bytes]:
    return _host.kv_get(key)


def get_text(key: str) -> Optional[str]:
    v = _host.kv_get(key)
    return None if v is None else v.decode("utf-8", "replace")


def set(key: str, value: Union[bytes, str]) -> None:  # noqa: A001 (the contract's name)
    _call("kv-set", _host.kv_set, key, _bytes(value))


def delete(key: str) -> bool:
    return _host.kv_delete(key)


def get_json(key: str) -> Any:
    v = _host.kv_get(key)
    return None if v is None else _json.loads(v)


def set_json(key: str, value: Any) -> None:
    set(key, _json.dumps(value, separators=(",", ":")))


def increment(key: str, delta: int = 1) -> int:
    """Atomically adds ``delta`` (absent counts as 0); returns the new value."""
    return _call("kv-increment", _host.kv_increment, key, delta)


def compare_and_set(key: str, expected: Optional[Union[bytes, str]], new: Optional[Union[bytes, str]]) -> bool:
    """Replaces the value only if it is ``expected`` (None: absent); True if it was replaced."""
    b = lambda v: None if v is None else _bytes(v)  # noqa: E731
    return _call("kv-compare-and-set", _host.kv_compare_and_set, key, b(expected), b(new))


def list(prefix: str = "", after: Optional[str] = None, limit: int = 100) -> Tuple[List[str], Optional[str]]:  # noqa: A001
    """One page of keys starting with ``prefix`` after ``after``: (keys, next)."""
    page = _host.kv_list(prefix, after, limit)
    return page.keys, page.next
