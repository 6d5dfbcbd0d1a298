"""Write wasmsock plugins in Python.

A plugin is a module (``app.py``) with a :class:`Plugin` subclass (every method optional) and one
line that exports it as the contract's handler::

    from wasmsock_sdk import Plugin, Flow, export

    class Echo(Plugin):
        def on_message(self, conn, msg):
            conn.send(msg)
            return Flow.done()

    Handler = export(Echo)

``python3 guest-sdk-py/wasmsock_tool.py build DIR`` (run by ``wasmsock build``) turns it into a wasm component
with componentize-py, for the contract in the repository's wit/ (``wasmsock:plugin@0.2.0``);
the bindings (``wit_world``) are generated from wit/ at each build, never copied by hand.

The host owns sockets, rooms, attachments and a key/value store. An instance of the plugin is
reused for many connections and may be replaced at any time (hot reload, or after a trap), so
keep what must last in :meth:`Conn.set_attachment` or :mod:`kv`, not in globals. Every call runs
under a CPU deadline and a memory cap; there is no filesystem, network, sleeping or threads, and
printed output goes to the server log.
"""

from __future__ import annotations

import json as _json
from typing import Any, Iterable, List, Optional, Tuple, Union
from urllib.parse import unquote_plus

from componentize_py_types import Err
from wit_world import exports as _exports
from wit_world.imports import host as _host
from wit_world.imports import types as _types

CONTRACT_VERSION = "0.2.0"

__all__ = [
    "CONTRACT_VERSION",
    "Conn",
    "Connect",
    "Flow",
    "Identity",
    "Message",
    "Plugin",
    "Request",
    "WasmsockError",
    "config",
    "export",
    "kv",
    "log",
    "rooms",
]


class WasmsockError(Exception):
    """Why a host call was refused; ``code`` is the contract's error code (e.g. ``queue-full``)."""

    def __init__(self, code: str, what: str):
        super().__init__(f"{what}: {code}")
        self.code = code


def _code(value: Any) -> str:
    name = getattr(value, "name", None)
    return name.lower().replace("_", "-") if isinstance(name, str) else str(value)


def _call(what: str, f, *args):
    # The bindings raise the error value of a `result` as `Err`; give it the contract's name.
    try:
        return f(*args)
    except Err as e:
        raise WasmsockError(_code(e.value), what) from None


def _bytes(data: Union[bytes, bytearray, memoryview, str]) -> bytes:
    if isinstance(data, str):
        return data.encode()
    return bytes(data)


class Message:
    """A complete WebSocket data message: text (``str``) or binary (``bytes``)."""

    __slots__ = ("data",)

    def __init__(self, data: Union[str, bytes]):
        self.data = data

    @staticmethod
    def text(text: str) -> "Message":
        return Message(str(text))

    @staticmethod
    def binary(data: Union[bytes, bytearray, memoryview, str]) -> "Message":
        return Message(_bytes(data))

    @staticmethod
    def json(value: Any) -> "Message":
        """A text message holding ``value`` as JSON."""
        return Message(_json.dumps(value, separators=(",", ":")))

    @staticmethod
    def of(value: "MessageLike") -> "Message":
        """A Message from a str (text), bytes (binary) or a Message."""
        if isinstance(value, Message):
            return value
        if isinstance(value, str):
            return Message(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return Message(bytes(value))
        raise TypeError("a message is a str, bytes or a Message (use Message.json for values)")

    @property
    def is_text(self) -> bool:
        return isinstance(self.data, str)

    def as_text(self) -> str:
        """The text (a binary message decoded as UTF-8, with replacement characters)."""
        return self.data if isinstance(self.data, str) else self.data.decode("utf-8", "replace")

    def as_bytes(self) -> bytes:
        return self.data.encode() if isinstance(self.data, str) else self.data

    def parse_json(self) -> Any:
        """The message parsed as JSON (raises ``ValueError`` when it is not)."""
        return _json.loads(self.as_text())

    def __len__(self) -> int:
        return len(self.as_bytes())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (str, bytes)):
            other = Message(other)
        return isinstance(other, Message) and type(self.data) is type(other.data) and self.data == other.data

    def __repr__(self) -> str:
        return f"Message({self.data!r})"

    def _to_wit(self) -> _types.Message:
        if isinstance(self.data, str):
            return _types.Message_Text(self.data)
        return _types.Message_Binary(self.data)

    @staticmethod
    def _from_wit(m: _types.Message) -> "Message":
        return Message(m.value)


MessageLike = Union[Message, str, bytes, bytearray, memoryview]


class Identity:
    """Who a connection belongs to; ``claims`` is a JSON object text."""

    __slots__ = ("id", "claims")

    def __init__(self, id: str, claims: Union[str, dict, None] = None):
        self.id = str(id)
        self.claims = "{}" if claims is None else claims if isinstance(claims, str) else _json.dumps(claims)

    def claims_json(self) -> Any:
        return _json.loads(self.claims)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identity) and (self.id, self.claims) == (other.id, other.claims)

    def __repr__(self) -> str:
        return f"Identity({self.id!r}, {self.claims!r})"

    def _to_wit(self) -> _types.Identity:
        return _types.Identity(self.id, self.claims)

    @staticmethod
    def _from_wit(i: Optional[_types.Identity]) -> Optional["Identity"]:
        return None if i is None else Identity(i.id, i.claims)


class Conn:
    """A connection handle. Cheap to create; all state lives in the host."""

    __slots__ = ("id",)

    def __init__(self, id: int):
        self.id = int(id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Conn) and self.id == other.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"Conn({self.id})"

    def send(self, msg: MessageLike) -> None:
        """Queues a message; raises :class:`WasmsockError` (e.g. ``queue-full``)."""
        _call("send", _host.send, self.id, Message.of(msg)._to_wit())

    def send_json(self, value: Any) -> None:
        self.send(Message.json(value))

    def close(self, code: int = 1000, reason: str = "") -> None:
        _call("close", _host.close, self.id, code, reason)

    def identity(self) -> Optional[Identity]:
        return Identity._from_wit(_host.identity_of(self.id))

    def attachment(self) -> Optional[bytes]:
        return _host.attachment(self.id)

    def set_attachment(self, data: Union[bytes, str]) -> None:
        """Replaces this plugin's attachment on the connection; empty removes it."""
        _call("set-attachment", _host.set_attachment, self.id, _bytes(data))

    def attachment_json(self) -> Any:
        a = self.attachment()
        return None if a is None else _json.loads(a)

    def set_attachment_json(self, value: Any) -> None:
        self.set_attachment(_json.dumps(value, separators=(",", ":")))

    def join(self, room: str) -> None:
        _call("join", _host.join, self.id, room)

    def leave(self, room: str) -> bool:
        return _host.leave(self.id, room)

    def rooms(self) -> List[str]:
        return list(_host.rooms(self.id))


class Request:
    """The HTTP upgrade request, as seen before the handshake is answered."""

    def __init__(
        self,
        route: str = "/",
        path: Optional[str] = None,
        query: str = "",
        headers: Iterable[Tuple[str, str]] = (),
        remote_addr: str = "127.0.0.1:50000",
        client_cert_subject: Optional[str] = None,
        identity: Optional[Identity] = None,
    ):
        self.route = route
        self.path = route if path is None else path
        self.query = query
        self.headers = [(k.lower(), v) for k, v in headers]
        self.remote_addr = remote_addr
        self.client_cert_subject = client_cert_subject
        self.identity = identity

    def header(self, name: str) -> Optional[str]:
        n = name.lower()
        return next((v for k, v in self.headers if k == n), None)

    def query_param(self, name: str) -> Optional[str]:
        for part in self.query.split("&"):
            k, eq, v = part.partition("=")
            if unquote_plus(k) == name:
                return unquote_plus(v) if eq else ""
        return None

    def protocols(self) -> List[str]:
        return [p.strip() for p in (self.header("sec-websocket-protocol") or "").split(",") if p.strip()]

    def _to_wit(self) -> _types.Request:
        ident = None if self.identity is None else self.identity._to_wit()
        return _types.Request(
            self.route, self.path, self.query, list(self.headers), self.remote_addr, self.client_cert_subject, ident
        )

    @staticmethod
    def _from_wit(r: _types.Request) -> "Request":
        return Request(
            r.route, r.path, r.query, r.headers, r.remote_addr, r.client_cert_subject, Identity._from_wit(r.identity)
        )


class Connect:
    """What ``on_connect`` answers (the contract's values, comparable with ``==``)."""

    @staticmethod
    def accept(protocol: Optional[str] = None) -> _types.Connect:
        return _types.Connect_Accept(_types.Accept(None, protocol))

    @staticmethod
    def accept_as(identity: Union[Identity, str], protocol: Optional[str] = None) -> _types.Connect:
        i = identity if isinstance(identity, Identity) else Identity(identity)
        return _types.Connect_Accept(_types.Accept(i._to_wit(), protocol))

    @staticmethod
    def reject(status: int, reason: str) -> _types.Connect:
        return _types.Connect_Reject(_types.Reject(status, str(reason)))


class Flow:
    """What ``on_message`` answers (the contract's values, comparable with ``==``)."""

    @staticmethod
    def pass_() -> _types.Flow:
        """Hand the same message to the next plugin of the chain."""
        return _types.Flow_Pass()

    @staticmethod
    def forward(msg: MessageLike) -> _types.Flow:
        """Hand this (rewritten) message to the next plugin."""
        return _types.Flow_Forward(Message.of(msg)._to_wit())

    @staticmethod
    def done() -> _types.Flow:
        """The message is handled."""
        return _types.Flow_Done()


class Plugin:
    """What a plugin implements; every method is optional. One object per instance."""

    def on_connect(self, conn: Conn, req: Request) -> _types.Connect:
        return Connect.accept()

    def on_message(self, conn: Conn, msg: Message) -> _types.Flow:
        return Flow.pass_()

    def on_close(self, conn: Conn, code: int, reason: str) -> None:
        pass


def export(plugin_class: type) -> type:
    """The contract's ``Handler`` export for a :class:`Plugin` subclass: ``Handler = export(MyPlugin)``."""
    plugin = plugin_class()

    class Handler(_exports.Handler):
        def on_connect(self, conn: int, req: _types.Request) -> _types.Connect:
            answer = plugin.on_connect(Conn(conn), Request._from_wit(req))
            return Connect.accept() if answer is None else answer

        def on_message(self, conn: int, msg: _types.Message) -> _types.Flow:
            answer = plugin.on_message(Conn(conn), Message._from_wit(msg))
            return Flow.done() if answer is None else answer

        def on_close(self, conn: int, code: int, reason: str) -> None:
            plugin.on_close(Conn(conn), code, reason)

    # Methods for handler exports this SDK does not wrap yet (the contract grew since) are passed
    # through as they are, taking and returning the contract's own values (wit_world).
    for name in dir(plugin_class):
        if not name.startswith("_") and name not in ("on_connect", "on_message", "on_close"):
            method = getattr(plugin, name)
            if callable(method):
                setattr(Handler, name, lambda self, *args, _m=method: _m(*args))
    Handler.plugin = plugin
    return Handler


def config(key: str) -> Optional[str]:
    """A setting of this plugin from the host configuration (``[plugins.NAME.config]``)."""
    return _host.config(key)


from . import kv, log, rooms  # noqa: E402  (they use the names above)
