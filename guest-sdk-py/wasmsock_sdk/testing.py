"""Unit tests of plugins without a server.

:class:`TestHost` answers the contract's host functions in memory, with the server's default
limits, and records what a plugin sent, published, stored, logged and closed. The plugin is driven
through its exported ``Handler``, the same entry points the server calls::

    from wasmsock_sdk.testing import TestHost
    from app import Handler

    host = TestHost()
    conn = host.open("/echo")
    host.message(Handler, conn, "hi")
    assert host.sent(conn) == ["hi"]

Run with ``python3 guest-sdk-py/wasmsock_tool.py test DIR`` (generates the bindings, then runs unittest).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

from componentize_py_types import Err
from wit_world.imports import host as _host
from wit_world.imports import types as _types

from . import Conn, Identity, Message, MessageLike, Request

# The server's defaults (crate wasmsock-limits); a test may lower them.
DEFAULT_LIMITS = {
    "max_message_size": 1 << 20,
    "max_sends_per_call": 10_000,
    "max_attachment": 16 << 10,
    "max_rooms_per_connection": 64,
    "max_room_name": 128,
    "kv_max_keys": 10_000,
    "kv_max_key": 256,
    "kv_max_value": 64 << 10,
}

E = _types.ErrorCode
K = _host.KvError


class _ConnState:
    def __init__(self, route: str, identity: Optional[Identity]):
        self.route = route
        self.identity = identity
        self.open = True
        self.sent: List[Message] = []
        self.close_requested: Optional[Tuple[int, str]] = None
        self.attachment: Optional[bytes] = None
        self.rooms: List[str] = []


class TestHost:
    """An in-memory host; creating one makes it answer the plugin's host calls."""

    __test__ = False  # not a test case for test collectors

    def __init__(self, **limits: int):
        self.limits = {**DEFAULT_LIMITS, **limits}
        self._next = 1
        self._conns: Dict[int, _ConnState] = {}
        self._rooms: Dict[str, List[int]] = {}
        self._kv: Dict[str, bytes] = {}
        self._config: Dict[str, str] = {}
        self._logs: List[Tuple[str, str]] = []
        self._sends = 0
        for name in dir(self):
            if name.startswith("_h_"):
                setattr(_host, name[3:], getattr(self, name))

    # What tests call.
    def config(self, key: str, value: str) -> "TestHost":
        self._config[key] = str(value)
        return self

    def open(self, route: str, identity: Union[Identity, str, None] = None) -> Conn:
        """An open connection on ``route``, as if accepted (optionally with an identity)."""
        cid = self._next
        self._next += 1
        ident = Identity(identity) if isinstance(identity, str) else identity
        self._conns[cid] = _ConnState(route, ident)
        return Conn(cid)

    def connect(self, handler: type, req: Request) -> Tuple[Conn, Any]:
        """Runs on-connect for ``req``; returns the connection and the answer."""
        conn = self.open(req.route)
        self._sends = 0
        answer = handler().on_connect(conn.id, req._to_wit())
        if isinstance(answer, _types.Connect_Accept) and answer.value.identity is not None:
            self._conns[conn.id].identity = Identity(answer.value.identity.id, answer.value.identity.claims)
        if isinstance(answer, _types.Connect_Reject):
            self._drop(conn.id)
        return conn, answer

    def message(self, handler: type, conn: Conn, msg: MessageLike) -> Any:
        """Delivers a message; returns the plugin's flow answer."""
        self._sends = 0
        return handler().on_message(conn.id, Message.of(msg)._to_wit())

    def close(self, handler: type, conn: Conn, code: int = 1000, reason: str = "") -> None:
        """Ends a connection: on-close runs, the host forgets it."""
        self._sends = 0
        handler().on_close(conn.id, code, reason)
        self._drop(conn.id)

    def sent(self, conn: Conn) -> List[Message]:
        """The messages sent to ``conn`` since the last call, and forgets them."""
        c = self._conns.get(conn.id)
        if c is None:
            return []
        out, c.sent = c.sent, []
        return out

    def close_requested(self, conn: Conn) -> Optional[Tuple[int, str]]:
        c = self._conns.get(conn.id)
        return None if c is None else c.close_requested

    def is_open(self, conn: Conn) -> bool:
        c = self._conns.get(conn.id)
        return c is not None and c.open

    def members(self, room: str) -> List[Conn]:
        return [Conn(c) for c in self._rooms.get(room, [])]

    def kv(self, key: str) -> Optional[bytes]:
        return self._kv.get(key)

    def logs(self) -> List[Tuple[str, str]]:
        return list(self._logs)

    # Internals.
    def _drop(self, cid: int) -> None:
        c = self._conns.pop(cid, None)
        if c is None:
            return
        for room in c.rooms:
            members = self._rooms.get(room, [])
            if cid in members:
                members.remove(cid)

    def _conn(self, cid: int) -> _ConnState:
        c = self._conns.get(cid)
        if c is None or not c.open:
            raise Err(E.UNKNOWN_CONNECTION)
        return c

    def _charge(self, n: int, size: int) -> None:
        if size > self.limits["max_message_size"]:
            raise Err(E.TOO_LARGE)
        if self._sends + n > self.limits["max_sends_per_call"]:
            raise Err(E.LIMIT_REACHED)
        self._sends += n

    # The contract's host functions (installed on the bindings' host module).
    def _h_send(self, conn: int, msg: _types.Message) -> None:
        c = self._conn(conn)
        m = Message._from_wit(msg)
        self._charge(1, len(m))
        c.sent.append(m)

    def _h_close(self, conn: int, code: int, reason: str) -> None:
        c = self._conn(conn)
        if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
            raise Err(E.INVALID_ARGUMENT)
        c.close_requested = (code, reason)
        c.open = False

    def _h_identity_of(self, conn: int) -> Optional[_types.Identity]:
        c = self._conns.get(conn)
        return None if c is None or c.identity is None else c.identity._to_wit()

    def _h_attachment(self, conn: int) -> Optional[bytes]:
        c = self._conns.get(conn)
        return None if c is None else c.attachment

    def _h_set_attachment(self, conn: int, data: bytes) -> None:
        c = self._conn(conn)
        if len(data) > self.limits["max_attachment"]:
            raise Err(E.TOO_LARGE)
        c.attachment = bytes(data) or None

    def _h_join(self, conn: int, room: str) -> None:
        c = self._conn(conn)
        if not room:
            raise Err(E.INVALID_ARGUMENT)
        if len(room) > self.limits["max_room_name"]:
            raise Err(E.TOO_LARGE)
        if room in c.rooms:
            return
        if len(c.rooms) >= self.limits["max_rooms_per_connection"]:
            raise Err(E.LIMIT_REACHED)
        c.rooms.append(room)
        self._rooms.setdefault(room, []).append(conn)

    def _h_leave(self, conn: int, room: str) -> bool:
        c = self._conns.get(conn)
        if c is None or room not in c.rooms:
            return False
        c.rooms.remove(room)
        self._rooms[room].remove(conn)
        return True

    def _h_rooms(self, conn: int) -> List[str]:
        c = self._conns.get(conn)
        return [] if c is None else list(c.rooms)

    def _h_publish(self, room: str, msg: _types.Message, except_: Optional[int]) -> int:
        m = Message._from_wit(msg)
        targets = [c for c in self._rooms.get(room, []) if c != except_]
        self._charge(max(1, len(targets)), len(m))
        for c in targets:
            self._conns[c].sent.append(m)
        return len(targets)

    def _h_members(self, room: str, limit: int) -> List[int]:
        return self._rooms.get(room, [])[:limit]

    def _h_member_count(self, room: str) -> int:
        return len(self._rooms.get(room, []))

    def _h_kv_get(self, key: str) -> Optional[bytes]:
        return self._kv.get(key)

    def _h_kv_set(self, key: str, value: bytes) -> None:
        if not key or len(key) > self.limits["kv_max_key"]:
            raise Err(E.INVALID_ARGUMENT)
        if len(value) > self.limits["kv_max_value"]:
            raise Err(E.TOO_LARGE)
        if key not in self._kv and len(self._kv) >= self.limits["kv_max_keys"]:
            raise Err(E.LIMIT_REACHED)
        self._kv[key] = bytes(value)

    def _h_kv_delete(self, key: str) -> bool:
        return self._kv.pop(key, None) is not None

    def _h_kv_increment(self, key: str, delta: int) -> int:
        if not key or len(key) > self.limits["kv_max_key"]:
            raise Err(K.INVALID_KEY)
        try:
            value = int(self._kv.get(key, b"0").decode()) + delta
        except ValueError:
            raise Err(K.NOT_A_NUMBER) from None
        if not -(2**63) <= value < 2**63:
            raise Err(K.NOT_A_NUMBER)
        self._kv[key] = str(value).encode()
        return value

    def _h_kv_compare_and_set(self, key: str, expected: Optional[bytes], new: Optional[bytes]) -> bool:
        if not key or len(key) > self.limits["kv_max_key"]:
            raise Err(K.INVALID_KEY)
        if self._kv.get(key) != expected:
            return False
        if new is None:
            self._kv.pop(key, None)
        else:
            if len(new) > self.limits["kv_max_value"]:
                raise Err(K.TOO_LARGE)
            self._kv[key] = bytes(new)
        return True

    def _h_kv_list(self, prefix: str, after: Optional[str], limit: int) -> Any:
        keys = sorted(k for k in self._kv if k.startswith(prefix) and (after is None or k > after))
        n = min(limit, 1000)
        page = keys[:n]
        return _host.KvPage(page, page[-1] if len(keys) > n else None)

    def _h_config(self, key: str) -> Optional[str]:
        return self._config.get(key)

    def _h_log(self, level: _types.LogLevel, message: str) -> None:
        self._logs.append((level.name.lower(), message))
