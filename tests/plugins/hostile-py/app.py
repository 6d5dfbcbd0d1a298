"""Test plugin: does what a message tells it to, including misbehaving.

    loop | alloc | throw   endless loop, memory bomb, uncaught exception
    closed                 replies with how many on-close calls the plugin has had
    send-unknown           sends to a connection that does not exist, replies with the error code
    anything else          echoed

At connect, ``?mode=loop`` or ``?mode=throw`` misbehaves before the handshake is answered.
"""

from wasmsock_sdk import Conn, Connect, Flow, Plugin, WasmsockError, export, kv

_keep = []


class Hostile(Plugin):
    def on_connect(self, conn, req):
        mode = req.query_param("mode")
        if mode == "loop":
            while True:
                pass
        if mode == "throw":
            raise RuntimeError("raised at connect")
        return Connect.accept()

    def on_message(self, conn, msg):
        cmd = msg.as_text()
        if cmd == "loop":
            while True:
                pass
        if cmd == "alloc":
            while True:
                _keep.append(bytearray(1 << 20))
        if cmd == "throw":
            raise RuntimeError("raised on purpose")
        if cmd == "closed":
            conn.send(kv.get_text("closed") or "0")
        elif cmd == "send-unknown":
            try:
                Conn(987654321).send("x")
                conn.send("sent?!")
            except WasmsockError as e:
                conn.send(f"error {e.code}")
        else:
            conn.send(msg)
        return Flow.done()

    def on_close(self, conn, code, reason):
        kv.increment("closed")


Handler = export(Hostile)
