// Channels over JSON, in TypeScript (the rooms example of the Rust SDK, smaller):
//   {"event":"subscribe","channel":"c"}      -> {"event":"subscribed","channel":"c","members":N}
//   {"event":"unsubscribe","channel":"c"}    -> {"event":"unsubscribed","channel":"c"}
//   {"event":"publish","channel":"c","data":…} -> every other member gets
//                                              {"event":"message","channel":"c","data":…,"from":"…"}
//   {"event":"stats","channel":"c"}          -> {"event":"stats","channel":"c","published":N,"members":N,"sent":N}
// Rooms, memberships and fan-out are the host's; the count of publishes per channel is in the
// plugin's key/value store and what one connection published is in its attachment, so both
// survive a reload of this code.
import { Connect, Flow, Message, definePlugin, kv, rooms, type Conn, type Request } from 'wasmsock-sdk';

type ClientEvent =
  | { event: 'subscribe'; channel: string }
  | { event: 'unsubscribe'; channel: string }
  | { event: 'publish'; channel: string; data: unknown }
  | { event: 'stats'; channel: string };

interface ConnState {
  sent: number;
}

function parse(msg: Message): ClientEvent {
  const v = msg.json<Partial<ClientEvent>>();
  if (typeof v !== 'object' || v === null || typeof v.channel !== 'string' || v.channel === '') {
    throw new Error('expected {"event": ..., "channel": "..."}');
  }
  return v as ClientEvent;
}

function from(conn: Conn): string {
  return conn.identity()?.id ?? `conn-${conn.id}`;
}

export const handler = definePlugin({
  onConnect(_conn: Conn, req: Request) {
    const user = req.queryParam('user');
    return user ? Connect.acceptAs(user) : Connect.accept();
  },

  onMessage(conn: Conn, msg: Message) {
    let reply: unknown;
    try {
      const ev = parse(msg);
      switch (ev.event) {
        case 'subscribe':
          conn.join(ev.channel);
          reply = { event: 'subscribed', channel: ev.channel, members: rooms.count(ev.channel) };
          break;
        case 'unsubscribe':
          conn.leave(ev.channel);
          reply = { event: 'unsubscribed', channel: ev.channel };
          break;
        case 'publish': {
          const out = { event: 'message', channel: ev.channel, data: ev.data, from: from(conn) };
          rooms.publish(ev.channel, Message.json(out), conn);
          kv.increment(`published:${ev.channel}`);
          const state = conn.attachmentJson<ConnState>() ?? { sent: 0 };
          conn.setAttachmentJson({ sent: state.sent + 1 });
          return Flow.done();
        }
        case 'stats':
          reply = {
            event: 'stats',
            channel: ev.channel,
            published: Number(kv.getText(`published:${ev.channel}`) ?? 0),
            members: rooms.count(ev.channel),
            sent: conn.attachmentJson<ConnState>()?.sent ?? 0,
          };
          break;
        default:
          reply = { event: 'error', reason: 'unknown event' };
      }
    } catch (e) {
      reply = { event: 'error', reason: e instanceof Error ? e.message : String(e) };
    }
    conn.sendJson(reply);
    return Flow.done();
  },
});
