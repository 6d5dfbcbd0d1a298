// The `pusher` server SDK against wasmsock's pusher plugin, with pusher-js (Node) clients as
// the subscribers and a webhook backend that checks each request with the SDK's `webhook()`.
// Run by tests/all/pusher_api.rs:
//
//   NODE_EXTRA_CA_CERTS=<test CA> node sdk-api.js <server port> <webhook backend port>
//
// Prints one JSON object per line: {"step": ..., ...what was observed}; the Rust test asserts on
// them. Exits 1 (after a {"step": "failed"} line) when something does not arrive in time.

"use strict";

const http = require("http");
const https = require("https");
const Pusher = require("pusher");
const PusherJs = require("pusher-js");
const { createSignedQueryString } = require("pusher/lib/requests");

const [port, hookPort] = process.argv.slice(2).map(Number);
const APP = { appId: "test", key: "test-key", secret: "test-secret" };
const server = new Pusher({ ...APP, host: "localhost", port: String(port), useTLS: true });
const WAIT_MS = 5000;

const out = (step, fields) => console.log(JSON.stringify({ step, ...fields }));

function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A webhook backend: every request is checked with the SDK, and with a wrong secret.
const webhooks = [];
let webhookArrived = () => {};
const backend = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const rawBody = Buffer.concat(chunks).toString("utf8");
    const hook = server.webhook({ headers: req.headers, rawBody });
    const forged = new Pusher({ ...APP, secret: "not-the-secret" }).webhook({ headers: req.headers, rawBody });
    const seen = { valid: hook.isValid(), valid_with_wrong_secret: forged.isValid(), events: hook.isValid() ? hook.getEvents() : [] };
    webhooks.push(seen);
    webhookArrived();
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok");
  });
});

/// Webhook events received so far, flattened.
const hookEvents = () => webhooks.flatMap((w) => w.events);

async function webhookEvent(pred, what) {
  while (!hookEvents().some(pred)) {
    await within(WAIT_MS, `webhook ${what}`, new Promise((r) => (webhookArrived = r)));
  }
  return hookEvents().find(pred);
}

/// A pusher-js client; `user` signs presence subscriptions and sign-ins as that user, with
/// the SDK's own `authorizeChannel` / `authenticateUser` (what an auth endpoint would call).
function client(user) {
  const c = new PusherJs(APP.key, {
    cluster: "mt1",
    wsHost: "localhost",
    wsPort: port,
    wssPort: port,
    forceTLS: true,
    enabledTransports: ["ws"],
    channelAuthorization: {
      customHandler: (params, cb) =>
        cb(null, server.authorizeChannel(params.socketId, params.channelName, { user_id: user, user_info: { name: user } })),
    },
    userAuthentication: {
      customHandler: (params, cb) => cb(null, server.authenticateUser(params.socketId, { id: user })),
    },
  });
  c.errors = [];
  c.states = [];
  c.connection.bind("error", (e) => c.errors.push(e && e.data ? e.data : e && e.type));
  c.connection.bind("state_change", (s) => c.states.push(s.current));
  return c;
}

function connected(c) {
  if (c.connection.state === "connected") return Promise.resolve();
  return within(WAIT_MS, "connected", new Promise((r) => c.connection.bind("connected", r)));
}

function subscribe(c, name) {
  const ch = c.subscribe(name);
  return within(
    WAIT_MS,
    `subscription to ${name}`,
    new Promise((resolve, reject) => {
      ch.bind("pusher:subscription_succeeded", () => resolve(ch));
      ch.bind("pusher:subscription_error", (e) => reject(new Error(`subscription to ${name} failed: ${JSON.stringify(e)}`)));
    }),
  );
}

/// Records every event of `ch` (not the protocol's own) in order.
function record(ch) {
  const got = [];
  ch.bind_global((event, data) => {
    if (!event.startsWith("pusher")) got.push({ event, data });
  });
  return got;
}

async function until(got, pred, what) {
  const deadline = Date.now() + WAIT_MS;
  while (!got.some(pred)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(got)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/// A signed request sent by hand: `sign` is what the signature covers, `send` what is sent.
function raw(method, path, signBody, sendBody) {
  const query = createSignedQueryString(server.config.token, { method, path, body: signBody });
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: "localhost", port, method, path: `${path}?${query}`, headers: { "content-type": "application/json" } },
      (res) => {
        let body = "";
        res.on("data", (c) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode, body }));
      },
    );
    req.on("error", reject);
    req.end(sendBody);
  });
}

/// The status and body of a request the SDK made that failed (or 200).
async function status(promise) {
  try {
    const res = await promise;
    return { status: res.status, body: await res.text() };
  } catch (e) {
    return { status: e.status, body: e.body, error: e.status === undefined ? String(e) : undefined };
  }
}

async function main() {
  await new Promise((r) => backend.listen(hookPort, "127.0.0.1", r));

  const ada = client("ada");
  const bob = client("bob");
  await Promise.all([connected(ada), connected(bob)]);
  out("connected", { ada: ada.connection.socket_id, bob: bob.connection.socket_id });

  const adaOrders = record(await subscribe(ada, "orders"));
  const bobOrders = record(await subscribe(bob, "orders"));
  const bobNews = record(await subscribe(bob, "news"));
  await subscribe(ada, "presence-room");
  await subscribe(bob, "presence-room");

  // One event to one channel: both subscribers get it, data decoded as pusher-js decodes it.
  const single = await status(server.trigger("orders", "placed", { id: 1, total: 9.5 }));
  await until(adaOrders, (e) => e.event === "placed", "placed at ada");
  await until(bobOrders, (e) => e.event === "placed", "placed at bob");
  out("single", { answer: single, ada: adaOrders.slice(), bob: bobOrders.slice() });

  // One event to several channels, and a batch.
  const multi = await status(server.trigger(["orders", "news"], "both", "plain text"));
  const batch = await status(
    server.triggerBatch([
      { channel: "orders", name: "b1", data: { n: 1 } },
      { channel: "news", name: "b2", data: { n: 2 } },
    ]),
  );
  await until(bobNews, (e) => e.event === "b2", "b2 at bob");
  await until(adaOrders, (e) => e.event === "b1", "b1 at ada");
  out("multi_and_batch", { multi, batch, ada: adaOrders.slice(), bob_news: bobNews.slice() });

  // Socket exclusion: ada triggered it (as a backend does for the originating user), only bob
  // gets it; the marker that follows shows ada's stream went on without it.
  const excluded = await status(server.trigger("orders", "excluded", "x", { socket_id: ada.connection.socket_id }));
  await status(server.trigger("orders", "marker", "m"));
  await until(adaOrders, (e) => e.event === "marker", "marker at ada");
  await until(bobOrders, (e) => e.event === "marker", "marker at bob");
  out("exclusion", {
    answer: excluded,
    ada: adaOrders.map((e) => e.event),
    bob: bobOrders.map((e) => e.event),
  });

  // A trigger's info.
  const info = await status(server.trigger("presence-room", "hi", "x", { info: "user_count,subscription_count" }));
  out("trigger_info", { answer: info });

  // Channel queries through the SDK.
  const get = async (path, params) => {
    const res = await server.get({ path, params });
    return { status: res.status, body: await res.json() };
  };
  out("queries", {
    channels: await get("/channels", {}),
    presence: await get("/channels", { filter_by_prefix: "presence-", info: "user_count" }),
    orders: await get("/channels/orders", { info: "subscription_count" }),
    empty: await get("/channels/nobody-here", {}),
    users: await get("/channels/presence-room/users", {}),
    user_count_on_public: await status(server.get({ path: "/channels/orders", params: { info: "user_count" } })),
  });

  // Sign-in, a message to the user, and terminating the user's connections.
  ada.signin();
  await within(WAIT_MS, "ada's sign-in", ada.user.signinDonePromise);
  const toUser = [];
  ada.user.bind("to-ada", (data) => toUser.push(data));
  await status(server.sendToUser("ada", "to-ada", { hi: true }));
  await until(toUser, () => true, "the event sent to ada");
  const terminated = await status(server.terminateUserConnections("ada"));
  const deadline = Date.now() + WAIT_MS;
  while (ada.connection.state === "connected" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await webhookEvent((e) => e.name === "member_removed" && e.user_id === "ada", "member_removed for ada");
  out("terminate", {
    to_user: toUser,
    answer: terminated,
    ada_errors: ada.errors,
    ada_state: ada.connection.state,
    bob_state: bob.connection.state,
    users_after: await get("/channels/presence-room/users", {}),
  });

  // Refused requests: a wrong secret, a stale timestamp, a body other than the one signed,
  // an app that does not exist.
  const wrong = new Pusher({ ...APP, secret: "wrong-secret", host: "localhost", port: String(port), useTLS: true });
  const badSignature = await status(wrong.trigger("orders", "forged", "x"));
  const realNow = Date.now;
  Date.now = () => realNow() - 700 * 1000;
  const stalePromise = status(server.trigger("orders", "stale", "x"));
  Date.now = realNow;
  const stale = await stalePromise;
  const signed = JSON.stringify({ name: "tampered", channel: "orders", data: "a" });
  const sent = JSON.stringify({ name: "tampered", channel: "orders", data: "b" });
  const badMd5 = await raw("POST", "/apps/test/events", signed, sent);
  const other = new Pusher({ ...APP, appId: "nope", host: "localhost", port: String(port), useTLS: true });
  const unknownApp = await status(other.trigger("orders", "x", "x"));
  const tooBig = await status(server.trigger("orders", "big", "x".repeat(10 * 1024 + 1)));
  await status(server.trigger("orders", "after-refusals", "m"));
  await until(bobOrders, (e) => e.event === "after-refusals", "the event after the refusals");
  out("refused", {
    bad_signature: badSignature,
    stale,
    bad_md5: badMd5,
    unknown_app: unknownApp,
    too_big: tooBig,
    bob: bobOrders.map((e) => e.event),
  });

  // Webhooks: bob leaves everything, the channels are vacated.
  bob.disconnect();
  await webhookEvent((e) => e.name === "channel_vacated" && e.channel === "orders", "channel_vacated for orders");
  out("webhooks", { requests: webhooks });
  backend.close();
}

main().then(
  () => process.exit(0),
  (e) => {
    out("failed", { error: String(e && e.stack ? e.stack : e) });
    process.exit(1);
  },
);
