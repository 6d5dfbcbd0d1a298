"""Rooms of this plugin: membership and fan-out are the host's."""

from __future__ import annotations

from typing import List, Optional, Union

from wit_world.imports import host as _host

from . import Conn, Message, MessageLike, _call


def publish(room: str, msg: MessageLike, except_: Optional[Union[Conn, int]] = None) -> int:
    """Sends to every member (but ``except_``); returns how many it was queued to."""
    ex = except_.id if isinstance(except_, Conn) else except_
    return _call("publish", _host.publish, room, Message.of(msg)._to_wit(), ex)


def members(room: str, limit: int = 1000) -> List[Conn]:
    return [Conn(c) for c in _host.members(room, limit)]


def count(room: str) -> int:
    return _host.member_count(room)
