// Triggers one event with the `pusher` server SDK. Run by tests/all/pusher_api.rs:
//
//   NODE_EXTRA_CA_CERTS=<test CA> node sdk-trigger.js <port> <app id> <key> <secret> <channel> <event> <JSON data>
//
// Prints {"step": "trigger", "status": ..., "body": ...}.

"use strict";

const Pusher = require("pusher");

const [port, appId, key, secret, channel, event, data] = process.argv.slice(2);
const pusher = new Pusher({ appId, key, secret, host: "localhost", port, useTLS: true });

pusher
  .trigger(channel, event, JSON.parse(data))
  .then(async (res) => ({ status: res.status, body: await res.text() }))
  .catch((e) => ({ status: e.status, body: e.body, error: String(e) }))
  .then((r) => {
    console.log(JSON.stringify({ step: "trigger", ...r }));
    process.exit(r.status === 200 ? 0 : 1);
  });
