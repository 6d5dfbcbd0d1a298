// The echo plugin in JavaScript: every message comes back to its sender, text as text, binary
// as binary. Built with `wasmsock build plugins/echo-js` (see the README).
import { definePlugin, Flow } from 'wasmsock-sdk';

export const handler = definePlugin({
  onMessage(conn, msg) {
    try {
      conn.send(msg);
    } catch {
      // A closed peer or a full queue (slow consumer) is the host's to handle: nothing to do.
    }
    return Flow.done();
  },
});
