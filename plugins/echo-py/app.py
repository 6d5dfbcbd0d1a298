"""The echo plugin in Python: every message comes back to its sender, text as text, binary as
binary. Built with `wasmsock build plugins/echo-py` (see the README)."""

from wasmsock_sdk import Flow, Plugin, WasmsockError, export


class Echo(Plugin):
    def on_message(self, conn, msg):
        try:
            conn.send(msg)
        except WasmsockError:
            # A closed peer or a full queue (slow consumer) is the host's to handle.
            pass
        return Flow.done()


Handler = export(Echo)
