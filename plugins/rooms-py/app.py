"""Channels over JSON, in Python (the same protocol as plugins/rooms-ts):

    {"event":"subscribe","channel":"c"}        -> {"event":"subscribed","channel":"c","members":N}
    {"event":"unsubscribe","channel":"c"}      -> {"event":"unsubscribed","channel":"c"}
    {"event":"publish","channel":"c","data":…} -> every other member gets
                                                  {"event":"message","channel":"c","data":…,"from":"…"}
    {"event":"stats","channel":"c"}            -> {"event":"stats","channel":"c","published":N,"members":N,"sent":N}

Rooms, memberships and fan-out are the host's; the count of publishes per channel is in the
plugin's key/value store and what one connection published is in its attachment, so both survive
a reload of this code.
"""

from wasmsock_sdk import Connect, Flow, Message, Plugin, WasmsockError, export, kv, rooms


def _sender(conn):
    ident = conn.identity()
    return ident.id if ident else f"conn-{conn.id}"


class Rooms(Plugin):
    def on_connect(self, conn, req):
        user = req.query_param("user")
        return Connect.accept_as(user) if user else Connect.accept()

    def on_message(self, conn, msg):
        try:
            ev = msg.parse_json()
            channel = ev.get("channel") if isinstance(ev, dict) else None
            if not isinstance(channel, str) or not channel:
                raise ValueError('expected {"event": ..., "channel": "..."}')
            event = ev.get("event")
            if event == "subscribe":
                conn.join(channel)
                reply = {"event": "subscribed", "channel": channel, "members": rooms.count(channel)}
            elif event == "unsubscribe":
                conn.leave(channel)
                reply = {"event": "unsubscribed", "channel": channel}
            elif event == "publish":
                out = {"event": "message", "channel": channel, "data": ev.get("data"), "from": _sender(conn)}
                rooms.publish(channel, Message.json(out), conn)
                kv.increment(f"published:{channel}")
                state = conn.attachment_json() or {"sent": 0}
                conn.set_attachment_json({"sent": state["sent"] + 1})
                return Flow.done()
            elif event == "stats":
                reply = {
                    "event": "stats",
                    "channel": channel,
                    "published": int(kv.get_text(f"published:{channel}") or 0),
                    "members": rooms.count(channel),
                    "sent": (conn.attachment_json() or {"sent": 0})["sent"],
                }
            else:
                reply = {"event": "error", "reason": "unknown event"}
        except (ValueError, WasmsockError) as e:
            reply = {"event": "error", "reason": str(e)}
        conn.send_json(reply)
        return Flow.done()


Handler = export(Rooms)
