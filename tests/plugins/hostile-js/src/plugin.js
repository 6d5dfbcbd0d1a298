// Test plugin: does what a message tells it to, including misbehaving.
//   loop | alloc | throw          endless loop, memory bomb, uncaught exception
//   closed                        replies with how many on-close calls the plugin has had
//   send-unknown                  sends to a connection that does not exist, replies with the error code
//   anything else                 echoed
// At connect, `?mode=loop` or `?mode=throw` misbehaves before the handshake is answered.
import { Conn, Connect, Flow, WasmsockError, definePlugin, kv } from 'wasmsock-sdk';

const keep = [];

export const handler = definePlugin({
  onConnect(_conn, req) {
    const mode = req.queryParam('mode');
    if (mode === 'loop') for (;;) {}
    if (mode === 'throw') throw new Error('thrown at connect');
    return Connect.accept();
  },
  onMessage(conn, msg) {
    switch (msg.text) {
      case 'loop':
        for (;;) {}
      case 'alloc':
        for (;;) keep.push(new Uint8Array(1 << 20).fill(7));
      case 'throw':
        throw new Error('thrown on purpose');
      case 'closed':
        conn.send(kv.getText('closed') ?? '0');
        return Flow.done();
      case 'send-unknown':
        try {
          new Conn(987654321n).send('x');
          conn.send('sent?!');
        } catch (e) {
          conn.send(e instanceof WasmsockError ? `error ${e.code}` : `other ${e}`);
        }
        return Flow.done();
      default:
        conn.send(msg);
        return Flow.done();
    }
  },
  onClose() {
    kv.increment('closed');
  },
});
