// Unit tests of plugins without a server: an in-memory host that records what a plugin sent,
// published, stored, logged and closed, with the host's default limits.
//
//   node --import wasmsock-sdk/register --test      (what `wasmsock-js test` runs)
//
//   import { TestHost } from 'wasmsock-sdk/testing';
//   import { handler } from '../src/plugin.js';
//   const host = new TestHost();
//   const conn = host.open('/echo');
//   host.message(handler, conn, 'hi');
//   assert.deepEqual(host.sent(conn).map((m) => m.text), ['hi']);
//
// The plugin is driven through its `handler` export, the same entry points the server calls.

import { Conn, Identity, Message, Request } from './index.js';

/** The server's defaults (crate wasmsock-limits), which a test may lower. */
export const DEFAULT_LIMITS = Object.freeze({
  maxMessageSize: 1 << 20,
  maxSendsPerCall: 10_000,
  maxAttachment: 16 << 10,
  maxRoomsPerConnection: 64,
  maxRoomName: 128,
  kvMaxKeys: 10_000,
  kvMaxKey: 256,
  kvMaxValue: 64 << 10,
});

class Refused {
  constructor(payload) {
    this.payload = payload;
  }
}

const refuse = (code) => {
  throw new Refused(code);
};

const keyOf = (id) => BigInt(id).toString();
const idOf = (conn) => (conn instanceof Conn ? conn.id : BigInt(conn));
const bytes = (b) => new Uint8Array(b);
const compare = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

export class TestHost {
  /** Creates a host and makes it the current one (plugin code calls the latest). */
  constructor(limits = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.nextId = 1n;
    this.conns = new Map(); // id -> { route, identity, open, sent: [], closeRequested, attachment, rooms: Set }
    this.roomMembers = new Map(); // room -> Set of id keys
    this.store = new Map(); // key -> Uint8Array
    this.settings = new Map();
    this.logLines = [];
    this.sendsThisCall = 0;
    globalThis.__wasmsockTestHost = this;
  }

  /** Sets a plugin setting (`[plugins.NAME.config]`). Returns this host. */
  config(key, value) {
    this.settings.set(key, String(value));
    return this;
  }

  /** An open connection on `route`, as if accepted (optionally with an identity). */
  open(route, identity) {
    const id = this.nextId++;
    const ident = identity === undefined ? undefined : identity instanceof Identity ? identity : new Identity(identity);
    this.conns.set(keyOf(id), {
      route,
      identity: ident,
      open: true,
      sent: [],
      closeRequested: undefined,
      attachment: undefined,
      rooms: new Set(),
    });
    return new Conn(id);
  }

  /** Runs the plugin's on-connect for a request (an object with route, path, query, headers...). */
  connect(handler, req) {
    const conn = this.open(req.route ?? req.path ?? '/');
    const wit = {
      route: req.route ?? req.path ?? '/',
      path: req.path ?? req.route ?? '/',
      query: req.query ?? '',
      headers: (req.headers ?? []).map(([k, v]) => [k.toLowerCase(), v]),
      remoteAddr: req.remoteAddr ?? '127.0.0.1:50000',
      clientCertSubject: req.clientCertSubject,
      identity: req.identity ? { id: req.identity.id, claims: req.identity.claims ?? '{}' } : undefined,
    };
    const answer = this.#call(() => handler.onConnect(conn.id, wit));
    const state = this.conns.get(keyOf(conn.id));
    if (answer.tag === 'accept' && answer.val.identity) {
      state.identity = new Identity(answer.val.identity.id, answer.val.identity.claims);
    }
    if (answer.tag === 'reject') this.#drop(conn.id);
    return [conn, answer];
  }

  /** Delivers a message (string, bytes or Message) to the plugin; returns its flow answer. */
  message(handler, conn, msg) {
    return this.#call(() => handler.onMessage(idOf(conn), Message.from(msg).toWit()));
  }

  /** Ends a connection: the plugin's on-close runs, the host forgets its state. */
  close(handler, conn, code = 1000, reason = '') {
    this.#call(() => handler.onClose(idOf(conn), code, reason));
    this.#drop(idOf(conn));
  }

  /** The messages sent to `conn` since the last call (as Messages), and forgets them. */
  sent(conn) {
    const c = this.conns.get(keyOf(idOf(conn)));
    if (!c) return [];
    return c.sent.splice(0).map((m) => Message.fromWit(m));
  }

  /** The close a plugin asked for: [code, reason], or undefined. */
  closeRequested(conn) {
    return this.conns.get(keyOf(idOf(conn)))?.closeRequested;
  }

  isOpen(conn) {
    return this.conns.get(keyOf(idOf(conn)))?.open ?? false;
  }

  /** The members of a room (Conns, in joining order). */
  members(room) {
    return Array.from(this.roomMembers.get(room) ?? [], (k) => new Conn(BigInt(k)));
  }

  /** A key's value (bytes), or undefined. */
  kv(key) {
    return this.store.get(key);
  }

  /** The log lines so far: [level, message]. */
  logs() {
    return [...this.logLines];
  }

  #call(f) {
    this.sendsThisCall = 0;
    return f();
  }

  #drop(id) {
    const c = this.conns.get(keyOf(id));
    if (!c) return;
    for (const room of c.rooms) this.roomMembers.get(room)?.delete(keyOf(id));
    this.conns.delete(keyOf(id));
  }

  #conn(id) {
    const c = this.conns.get(keyOf(id));
    if (!c || !c.open) refuse('unknown-connection');
    return c;
  }

  #charge(size) {
    if (this.sendsThisCall >= this.limits.maxSendsPerCall) refuse('limit-reached');
    if (size > this.limits.maxMessageSize) refuse('too-large');
    this.sendsThisCall += 1;
  }

  // The contract's host functions (see fake-host.js), with the server's checks.
  hostSend(id, msg) {
    const c = this.#conn(id);
    this.#charge(Message.fromWit(msg).bytes.length);
    c.sent.push(msg);
  }
  hostClose(id, code, reason) {
    const c = this.#conn(id);
    const ok = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
    if (!ok) refuse('invalid-argument');
    c.closeRequested = [code, reason];
    c.open = false;
  }
  hostIdentityOf(id) {
    const i = this.conns.get(keyOf(id))?.identity;
    return i ? { id: i.id, claims: i.claims } : undefined;
  }
  hostAttachment(id) {
    const a = this.conns.get(keyOf(id))?.attachment;
    return a ? bytes(a) : undefined;
  }
  hostSetAttachment(id, data) {
    const c = this.#conn(id);
    if (data.length > this.limits.maxAttachment) refuse('too-large');
    c.attachment = data.length ? bytes(data) : undefined;
  }
  hostJoin(id, room) {
    const c = this.#conn(id);
    if (!room) refuse('invalid-argument');
    if (room.length > this.limits.maxRoomName) refuse('too-large');
    if (!c.rooms.has(room) && c.rooms.size >= this.limits.maxRoomsPerConnection) refuse('limit-reached');
    c.rooms.add(room);
    if (!this.roomMembers.has(room)) this.roomMembers.set(room, new Set());
    this.roomMembers.get(room).add(keyOf(id));
  }
  hostLeave(id, room) {
    const c = this.conns.get(keyOf(id));
    const was = c?.rooms.delete(room) ?? false;
    this.roomMembers.get(room)?.delete(keyOf(id));
    return was;
  }
  hostRooms(id) {
    return [...(this.conns.get(keyOf(id))?.rooms ?? [])];
  }
  hostPublish(room, msg, except) {
    const size = Message.fromWit(msg).bytes.length;
    if (size > this.limits.maxMessageSize) refuse('too-large');
    const targets = [...(this.roomMembers.get(room) ?? [])].filter((k) => except === undefined || k !== keyOf(except));
    if (this.sendsThisCall + Math.max(1, targets.length) > this.limits.maxSendsPerCall) refuse('limit-reached');
    this.sendsThisCall += Math.max(1, targets.length);
    for (const k of targets) this.conns.get(k)?.sent.push(msg);
    return targets.length;
  }
  hostMembers(room, limit) {
    const ids = [...(this.roomMembers.get(room) ?? [])].slice(0, limit).map((k) => BigInt(k));
    return BigUint64Array.from(ids);
  }
  hostMemberCount(room) {
    return this.roomMembers.get(room)?.size ?? 0;
  }
  hostKvGet(key) {
    const v = this.store.get(key);
    return v ? bytes(v) : undefined;
  }
  hostKvSet(key, value) {
    if (!key || key.length > this.limits.kvMaxKey) refuse('invalid-argument');
    if (value.length > this.limits.kvMaxValue) refuse('too-large');
    if (!this.store.has(key) && this.store.size >= this.limits.kvMaxKeys) refuse('limit-reached');
    this.store.set(key, bytes(value));
  }
  hostKvDelete(key) {
    return this.store.delete(key);
  }
  hostKvIncrement(key, delta) {
    if (!key || key.length > this.limits.kvMaxKey) refuse('invalid-key');
    const old = this.store.get(key);
    const text = old === undefined ? '0' : new TextDecoder().decode(old);
    if (!/^-?\d+$/.test(text)) refuse('not-a-number');
    const next = BigInt(text) + BigInt(delta);
    if (next > 2n ** 63n - 1n || next < -(2n ** 63n)) refuse('not-a-number');
    this.store.set(key, new TextEncoder().encode(next.toString()));
    return next;
  }
  hostKvCompareAndSet(key, expected, next) {
    if (!key || key.length > this.limits.kvMaxKey) refuse('invalid-key');
    const cur = this.store.get(key);
    const same =
      cur === undefined || expected === undefined
        ? cur === undefined && expected === undefined
        : cur.length === expected.length && cur.every((b, i) => b === expected[i]);
    if (!same) return false;
    if (next === undefined) this.store.delete(key);
    else {
      if (next.length > this.limits.kvMaxValue) refuse('too-large');
      this.store.set(key, bytes(next));
    }
    return true;
  }
  hostKvList(prefix, after, limit) {
    const keys = [...this.store.keys()]
      .filter((k) => k.startsWith(prefix) && (after === undefined || k > after))
      .sort(compare);
    const n = Math.min(limit, 1000);
    const page = keys.slice(0, n);
    return { keys: page, next: keys.length > n ? page[page.length - 1] : undefined };
  }
  hostConfig(key) {
    return this.settings.get(key);
  }
  hostLog(level, message) {
    this.logLines.push([level, message]);
  }
}

export { Conn, Identity, Message, Request };
