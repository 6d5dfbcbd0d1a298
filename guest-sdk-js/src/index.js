// wasmsock plugins in JavaScript and TypeScript.
//
// A plugin is an ES module that exports `handler = definePlugin({...})` (every method optional).
// The build (`wasmsock-js build`, run by `wasmsock build`) bundles it with this SDK and turns it
// into a wasm component for the contract in the repository's wit/ (wasmsock:plugin@0.2.0).
//
// The host owns sockets, rooms, attachments and a key/value store. An instance of the plugin is
// reused for many connections and may be replaced at any time (hot reload, or after a trap), so
// keep what must last in `conn.setAttachment` or `kv`, not in module variables. Every call runs
// under a CPU deadline and a memory cap; there is no filesystem, network, timer or waiting, and
// console output goes to the server log.
//
// Typed bindings of the host interface are generated from wit/ into ../types (see
// `wasmsock-js types`); this module is the only one that talks to it.

import * as host from 'wasmsock:plugin/host@0.2.0';

/** The version of the WIT contract (`wasmsock:plugin`) this SDK builds plugins for. */
export const CONTRACT_VERSION = '0.2.0';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Why a host call was refused: `code` is the contract's error code (e.g. `queue-full`). */
export class WasmsockError extends Error {
  constructor(code, what) {
    super(`${what}: ${code}`);
    this.name = 'WasmsockError';
    this.code = code;
  }
}

// The bindings throw the error value of a `result` (wrapped in an error object that carries it
// as `payload`); turn that into a WasmsockError with the contract's code.
function call(what, f) {
  try {
    return f();
  } catch (e) {
    if (e instanceof WasmsockError) throw e;
    const code = typeof e === 'string' ? e : typeof e?.payload === 'string' ? e.payload : undefined;
    if (code === undefined) throw e;
    throw new WasmsockError(code, what);
  }
}

function bytesOf(data) {
  if (data instanceof Uint8Array) return data;
  if (typeof data === 'string') return encoder.encode(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new TypeError('expected a Uint8Array or a string');
}

/** A complete WebSocket data message: text or binary. */
export class Message {
  /** @param {'text'|'binary'} kind @param {string|Uint8Array} data */
  constructor(kind, data) {
    this.kind = kind;
    this.data = data;
  }
  static text(text) {
    return new Message('text', String(text));
  }
  static binary(bytes) {
    return new Message('binary', bytesOf(bytes));
  }
  /** A text message holding `value` as JSON. */
  static json(value) {
    return new Message('text', JSON.stringify(value));
  }
  /** A Message from a string (text), bytes (binary) or a Message. */
  static from(value) {
    if (value instanceof Message) return value;
    if (typeof value === 'string') return Message.text(value);
    if (value instanceof Uint8Array || value instanceof ArrayBuffer) return Message.binary(value);
    throw new TypeError('a message is a string, a Uint8Array or a Message (use Message.json for values)');
  }
  get isText() {
    return this.kind === 'text';
  }
  /** The text of a text message; a binary message decoded as UTF-8. */
  get text() {
    return this.kind === 'text' ? this.data : decoder.decode(this.data);
  }
  /** The bytes of the message (a text message's UTF-8). */
  get bytes() {
    return this.kind === 'binary' ? this.data : encoder.encode(this.data);
  }
  /** Parses the message as JSON (throws a SyntaxError when it is not). */
  json() {
    return JSON.parse(this.text);
  }
  /** @internal */
  toWit() {
    return { tag: this.kind, val: this.data };
  }
  /** @internal */
  static fromWit(m) {
    return new Message(m.tag, m.val);
  }
}

/** Who a connection belongs to; `claims` is a JSON object text. */
export class Identity {
  constructor(id, claims = '{}') {
    this.id = String(id);
    this.claims = typeof claims === 'string' ? claims : JSON.stringify(claims);
  }
  /** The claims, parsed. */
  claimsJson() {
    return JSON.parse(this.claims);
  }
  /** @internal */
  static fromWit(i) {
    return i ? new Identity(i.id, i.claims) : undefined;
  }
}

/** A connection handle. Cheap to create; all state lives in the host. */
export class Conn {
  /** @param {bigint} id */
  constructor(id) {
    this.id = BigInt(id);
  }
  /** Queues a message (string: text, Uint8Array: binary, or a Message). Throws WasmsockError. */
  send(msg) {
    call('send', () => host.send(this.id, Message.from(msg).toWit()));
  }
  /** Sends `value` as a JSON text message. */
  sendJson(value) {
    this.send(Message.json(value));
  }
  /** Closes the connection with a WebSocket close code and a reason. */
  close(code = 1000, reason = '') {
    call('close', () => host.close(this.id, code, reason));
  }
  /** The identity a plugin set at connect time, if any. */
  identity() {
    return Identity.fromWit(host.identityOf(this.id));
  }
  /** This plugin's attachment on the connection (bytes), if any. */
  attachment() {
    return host.attachment(this.id) ?? undefined;
  }
  /** Replaces the attachment (bytes or a string); empty removes it. */
  setAttachment(data) {
    call('set-attachment', () => host.setAttachment(this.id, bytesOf(data)));
  }
  /** The attachment parsed as JSON, if any. */
  attachmentJson() {
    const a = this.attachment();
    return a === undefined ? undefined : JSON.parse(decoder.decode(a));
  }
  /** Stores `value` as a JSON attachment. */
  setAttachmentJson(value) {
    this.setAttachment(JSON.stringify(value));
  }
  /** Joins a room of this plugin. */
  join(room) {
    call('join', () => host.join(this.id, room));
  }
  /** Leaves a room; false if the connection was not a member. */
  leave(room) {
    return host.leave(this.id, room);
  }
  /** The rooms of this plugin the connection is in. */
  rooms() {
    return host.rooms(this.id);
  }
  toString() {
    return `conn-${this.id}`;
  }
}

/** The HTTP upgrade request, as seen before the handshake is answered. */
export class Request {
  constructor(r) {
    this.route = r.route;
    this.path = r.path;
    this.query = r.query ?? '';
    this.headers = r.headers ?? [];
    this.remoteAddr = r.remoteAddr ?? '';
    this.clientCertSubject = r.clientCertSubject ?? undefined;
    this.identity = r.identity ? Identity.fromWit(r.identity) : undefined;
  }
  /** The first header `name` (case-insensitive). */
  header(name) {
    const n = name.toLowerCase();
    return this.headers.find(([k]) => k === n)?.[1];
  }
  /** A query parameter, percent-decoded. */
  queryParam(name) {
    for (const part of this.query.split('&')) {
      const eq = part.indexOf('=');
      const k = eq < 0 ? part : part.slice(0, eq);
      if (decode(k) === name) return eq < 0 ? '' : decode(part.slice(eq + 1));
    }
    return undefined;
  }
  /** The subprotocols the client offered. */
  protocols() {
    return (this.header('sec-websocket-protocol') ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter((p) => p);
  }
}

function decode(s) {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/** What `onConnect` answers. */
export const Connect = {
  /** Accept, without an identity. */
  accept(protocol) {
    return { tag: 'accept', val: { identity: undefined, protocol } };
  },
  /** Accept and name the connection (an Identity or a user id). */
  acceptAs(identity, protocol) {
    const i = identity instanceof Identity ? identity : new Identity(identity);
    return { tag: 'accept', val: { identity: { id: i.id, claims: i.claims }, protocol } };
  },
  /** Refuse the upgrade with an HTTP status and a short reason. */
  reject(status, reason) {
    return { tag: 'reject', val: { status, reason: String(reason) } };
  },
};

/** What `onMessage` answers. */
export const Flow = {
  /** Hand the same message to the next plugin of the chain. */
  pass() {
    return { tag: 'pass' };
  },
  /** Hand this (rewritten) message to the next plugin. */
  forward(msg) {
    return { tag: 'forward', val: Message.from(msg).toWit() };
  },
  /** The message is handled. */
  done() {
    return { tag: 'done' };
  },
};

/** Rooms of this plugin. */
export const rooms = {
  /** Sends to every member (but `except`); returns how many it was queued to. */
  publish(room, msg, except) {
    const ex = except === undefined ? undefined : except instanceof Conn ? except.id : BigInt(except);
    return call('publish', () => host.publish(room, Message.from(msg).toWit(), ex));
  },
  /** Up to `limit` members on this node. */
  members(room, limit = 1000) {
    return Array.from(host.members(room, limit), (id) => new Conn(id));
  },
  /** How many members the room has on this node. */
  count(room) {
    return host.memberCount(room);
  },
};

/** This plugin's key/value store (shared by its instances, kept across reloads). */
export const kv = {
  /** The value's bytes, or undefined. */
  get(key) {
    return host.kvGet(key) ?? undefined;
  },
  /** The value as text, or undefined. */
  getText(key) {
    const v = host.kvGet(key);
    return v === undefined ? undefined : decoder.decode(v);
  },
  /** Stores bytes or a string. */
  set(key, value) {
    call('kv-set', () => host.kvSet(key, bytesOf(value)));
  },
  /** Deletes a key; false if it was absent. */
  delete(key) {
    return host.kvDelete(key);
  },
  getJson(key) {
    const t = kv.getText(key);
    return t === undefined ? undefined : JSON.parse(t);
  },
  setJson(key, value) {
    kv.set(key, JSON.stringify(value));
  },
  /** Atomically adds `delta` (absent counts as 0); returns the new value as a number. */
  increment(key, delta = 1) {
    return Number(call('kv-increment', () => host.kvIncrement(key, BigInt(delta))));
  },
  /** Replaces the value only if it is `expected` (undefined: absent); true if replaced. */
  compareAndSet(key, expected, next) {
    const b = (v) => (v === undefined ? undefined : bytesOf(v));
    return call('kv-compare-and-set', () => host.kvCompareAndSet(key, b(expected), b(next)));
  },
  /** One page of keys starting with `prefix`, after `after`. */
  list(prefix = '', after, limit = 100) {
    const page = host.kvList(prefix, after, limit);
    return { keys: page.keys, next: page.next ?? undefined };
  },
};

/** A structured log line, attributed to this plugin and the current connection. */
export const log = {
  trace: (m) => host.log('trace', String(m)),
  debug: (m) => host.log('debug', String(m)),
  info: (m) => host.log('info', String(m)),
  warn: (m) => host.log('warn', String(m)),
  error: (m) => host.log('error', String(m)),
};

/** A setting of this plugin from the host configuration (`[plugins.NAME.config]`). */
export function config(key) {
  return host.config(key) ?? undefined;
}

/**
 * Turns a plugin object into the contract's `handler` export. Every method is optional:
 * `onConnect(conn, req)` accepts by default, `onMessage(conn, msg)` passes by default, and
 * `onClose(conn, code, reason)` does nothing. Returned values may be Connect/Flow values, or
 * `undefined` (accept / done when `onMessage` is defined).
 */
export function definePlugin(plugin) {
  // Methods for handler exports this SDK does not wrap yet (the contract grew since) are passed
  // through as they are, taking and returning the contract's own values (see ../types).
  const extra = Object.fromEntries(
    Object.entries(plugin).filter(([k, v]) => typeof v === 'function' && !['onConnect', 'onMessage', 'onClose'].includes(k)),
  );
  return {
    ...extra,
    onConnect(conn, req) {
      if (!plugin.onConnect) return Connect.accept();
      return plugin.onConnect(new Conn(conn), new Request(req)) ?? Connect.accept();
    },
    onMessage(conn, msg) {
      if (!plugin.onMessage) return Flow.pass();
      return plugin.onMessage(new Conn(conn), Message.fromWit(msg)) ?? Flow.done();
    },
    onClose(conn, code, reason) {
      plugin.onClose?.(new Conn(conn), code, reason);
    },
  };
}
