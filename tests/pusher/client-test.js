// pusher-js (Node) against a wasmsock server running the pusher plugin: run by
// tests/all/pusher.rs, which starts the server and checks what this prints.
//
// Environment: PUSHER_HOST, PUSHER_PORT (the server's wss port), PUSHER_APP_ID, PUSHER_KEY,
// PUSHER_SECRET, WEBHOOK_PORT (this script receives the app's webhooks there) and
// NODE_EXTRA_CA_CERTS (the test CA). It serves the app's auth endpoint itself, built with the
// `pusher` server SDK (authorizeChannel, authenticateUser), as an app's backend would.
//
// Prints one line per step passed (`ok <step>`), each webhook event received as
// `webhook <json>`, and exits non-zero on the first failed step.

'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const nacl = require('tweetnacl');
const PusherJs = require('pusher-js');
const PusherServer = require('pusher');

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const HOST = env('PUSHER_HOST');
const PORT = Number(env('PUSHER_PORT'));
const KEY = env('PUSHER_KEY');
const SECRET = env('PUSHER_SECRET');
const WEBHOOK_PORT = Number(env('WEBHOOK_PORT'));
const STEP_MS = 5000;

const server = new PusherServer({
  appId: env('PUSHER_APP_ID'),
  key: KEY,
  secret: SECRET,
  host: HOST,
  port: String(PORT),
  useTLS: true,
  encryptionMasterKeyBase64: crypto.randomBytes(32).toString('base64'),
});

const ok = (step) => console.log(`ok ${step}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// Resolves with the first `event` on `emitter` (a channel, the connection, ...), or rejects.
function once(emitter, event, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what || event}`)), STEP_MS);
    const handler = (...args) => {
      clearTimeout(timer);
      emitter.unbind(event, handler);
      resolve(args);
    };
    emitter.bind(event, handler);
  });
}

/// Resolves true if `event` comes on `emitter` within `ms`, false otherwise.
function seenWithin(emitter, event, ms) {
  return new Promise((resolve) => {
    let seen = false;
    const handler = () => {
      seen = true;
    };
    emitter.bind(event, handler);
    setTimeout(() => {
      emitter.unbind(event, handler);
      resolve(seen);
    }, ms);
  });
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString()));
    req.on('error', reject);
  });
}

function listen(srv, port) {
  return new Promise((resolve) => srv.listen(port, '127.0.0.1', () => resolve(srv.address().port)));
}

// The app's auth endpoint: /auth for channels (the user is a form parameter of the test), /user-auth for signin.
async function startAuth() {
  const srv = http.createServer(async (req, res) => {
    const form = new URLSearchParams(await readBody(req));
    const socketId = form.get('socket_id');
    const user = form.get('user') || 'anon';
    let answer;
    if (req.url === '/user-auth') {
      answer = server.authenticateUser(socketId, { id: user, name: user.toUpperCase() });
    } else {
      const channel = form.get('channel_name');
      const presence = channel.startsWith('presence-')
        ? { user_id: user, user_info: { name: user.toUpperCase() } }
        : undefined;
      // "bad": a well-formed signature, for another channel.
      answer = server.authorizeChannel(socketId, form.get('bad') ? `${channel}-not` : channel, presence);
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(answer));
  });
  return `http://127.0.0.1:${await listen(srv, 0)}`;
}

// The app's webhook receiver: checks each batch's X-Pusher-Signature and prints its events.
const webhooks = [];
async function startWebhooks() {
  const srv = http.createServer(async (req, res) => {
    const body = await readBody(req);
    const expected = crypto.createHmac('sha256', SECRET).update(body).digest('hex');
    const signed = req.headers['x-pusher-signature'] === expected && req.headers['x-pusher-key'] === KEY;
    for (const event of JSON.parse(body).events) {
      webhooks.push({ ...event, signed });
      console.log(`webhook ${JSON.stringify({ ...event, signed })}`);
    }
    res.writeHead(200);
    res.end();
  });
  await listen(srv, WEBHOOK_PORT);
}

async function waitWebhook(pred, what) {
  for (let i = 0; i < STEP_MS / 50; i++) {
    if (webhooks.some(pred)) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for webhook ${what}`);
}

function client(auth, user, extra = {}) {
  return new PusherJs(extra.key || KEY, {
    cluster: 'local',
    wsHost: HOST,
    wsPort: PORT,
    wssPort: PORT,
    forceTLS: true,
    enabledTransports: ['ws'],
    disableStats: true,
    nacl, // private-encrypted- channels
    channelAuthorization: { endpoint: `${auth}/auth`, transport: 'ajax', params: { user, ...(extra.params || {}) } },
    userAuthentication: { endpoint: `${auth}/user-auth`, transport: 'ajax', params: { user } },
  });
}

async function connected(p) {
  if (p.connection.state !== 'connected') await once(p.connection, 'connected', 'connected');
  assert.match(p.connection.socket_id, /^\d+\.\d+$/);
  return p;
}

async function subscribed(p, name) {
  const ch = p.subscribe(name);
  const [data] = await Promise.race([
    once(ch, 'pusher:subscription_succeeded', `subscription to ${name}`),
    once(ch, 'pusher:subscription_error', `subscription to ${name}`).then(([e]) => {
      throw new Error(`subscription to ${name} failed: ${JSON.stringify(e)}`);
    }),
  ]);
  return [ch, data];
}

async function main() {
  await startWebhooks();
  const auth = await startAuth();

  const ada = await connected(client(auth, 'ada'));
  ok('connected');

  const [news] = await subscribed(ada, 'news');
  const [orders] = await subscribed(ada, 'private-orders');
  await subscribed(ada, 'private-encrypted-secrets');
  const [room, members] = await subscribed(ada, 'presence-room');
  assert.equal(members.count, 1);
  assert.equal(members.me.id, 'ada');
  assert.deepEqual(members.me.info, { name: 'ADA' });
  ok('subscribed public private encrypted presence');
  await waitWebhook((e) => e.name === 'channel_occupied' && e.channel === 'news', 'channel_occupied news');
  await waitWebhook((e) => e.name === 'member_added' && e.user_id === 'ada', 'member_added ada');

  // A second client: ada sees bob join; bob sees both.
  const bob = await connected(client(auth, 'bob'));
  const joined = once(room, 'pusher:member_added', 'member_added bob');
  const [bobRoom, bobMembers] = await subscribed(bob, 'presence-room');
  const [member] = await joined;
  assert.equal(member.id, 'bob');
  assert.deepEqual(member.info, { name: 'BOB' });
  assert.equal(bobMembers.count, 2);
  assert.deepEqual(Object.keys(bobMembers.members).sort(), ['ada', 'bob']);
  ok('presence member_added');

  // Client events between the two, with the sender's user id on presence channels.
  const [bobOrders] = await subscribed(bob, 'private-orders');
  const typing = once(bobOrders, 'client-typing', 'client-typing at bob');
  assert.ok(orders.trigger('client-typing', { who: 'ada' }));
  const [typed] = await typing;
  assert.deepEqual(typed, { who: 'ada' });
  const waved = once(room, 'client-wave', 'client-wave at ada');
  assert.ok(bobRoom.trigger('client-wave', { hi: 1 }));
  const [wave, meta] = await waved;
  assert.deepEqual(wave, { hi: 1 });
  assert.equal(meta.user_id, 'bob');
  ok('client events');
  await waitWebhook((e) => e.name === 'client_event' && e.event === 'client-wave' && e.user_id === 'bob', 'client_event');

  // Ada on a second connection: no second member_added, and no member_removed when it goes.
  const ada2 = await connected(client(auth, 'ada'));
  const added = seenWithin(bobRoom, 'pusher:member_added', 500);
  const [, ada2Members] = await subscribed(ada2, 'presence-room');
  assert.equal(ada2Members.count, 2);
  assert.equal(await added, false, 'a second connection of ada announced a second join');
  const removed = seenWithin(bobRoom, 'pusher:member_removed', 700);
  ada2.disconnect();
  assert.equal(await removed, false, 'one of two connections of ada leaving removed her');
  assert.equal(bobRoom.members.count, 2);
  ok('one member per user');

  // Bob leaves: ada sees member_removed.
  const left = once(room, 'pusher:member_removed', 'member_removed bob');
  bob.disconnect();
  const [gone] = await left;
  assert.equal(gone.id, 'bob');
  assert.equal(room.members.count, 1);
  ok('presence member_removed');
  await waitWebhook((e) => e.name === 'member_removed' && e.user_id === 'bob', 'member_removed bob');

  // A bad signature: the server's subscription error.
  const mallory = await connected(client(auth, 'mallory', { params: { bad: '1' } }));
  const refused = mallory.subscribe('private-orders');
  const [err] = await once(refused, 'pusher:subscription_error', 'subscription_error');
  assert.equal(err.type, 'AuthError');
  assert.equal(err.status, 401);
  assert.equal(refused.subscribed, false);
  // A client event on a channel it is not in: pusher:error 4009, still connected.
  const denied = once(mallory.connection, 'error', 'pusher:error');
  mallory.send_event('client-sneak', { x: 1 }, 'private-orders');
  const [denial] = await denied;
  assert.equal(denial.type, 'PusherError');
  assert.equal(denial.data.code, 4009);
  assert.equal(mallory.connection.state, 'connected');
  mallory.disconnect();
  ok('bad auth refused');

  // Sign-in: pusher:signin_success, then the user's own channel.
  ada.signin();
  await ada.user.signinDonePromise;
  assert.equal(ada.user.user_data.id, 'ada');
  const userChannel = ada.user.serverToUserChannel;
  if (!userChannel.subscribed) await once(userChannel, 'pusher:subscription_succeeded', 'the user channel');
  ok('signin');

  // An unknown app key: pusher:error 4001, and the client gives up.
  const stranger = client(auth, 'x', { key: 'no-such-key' });
  const [failure] = await once(stranger.connection, 'error', 'error 4001');
  assert.equal(failure.error.data.code, 4001);
  await sleep(200);
  assert.ok(['disconnected', 'failed'].includes(stranger.connection.state), stranger.connection.state);
  stranger.disconnect();
  ok('unknown key refused');

  // Everyone leaves: every channel is vacated.
  news.unsubscribe();
  await waitWebhook((e) => e.name === 'channel_vacated' && e.channel === 'news', 'channel_vacated news');
  ada.disconnect();
  for (const channel of ['private-orders', 'presence-room', 'private-encrypted-secrets']) {
    await waitWebhook((e) => e.name === 'channel_vacated' && e.channel === channel, `channel_vacated ${channel}`);
  }
  await waitWebhook((e) => e.name === 'member_removed' && e.user_id === 'ada', 'member_removed ada');
  ok('vacated');
  process.exit(0);
}

main().catch((e) => {
  console.error(`FAILED: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
