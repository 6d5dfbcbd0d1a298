// Types of the wasmsock JavaScript SDK. The contract's own types (`wasmsock:plugin/*`) are
// generated from wit/ by `wasmsock-js types` (jco) into ../types, never written by hand.
/// <reference path="../types/plugin.d.ts" />

import type * as wit from 'wasmsock:plugin/types@0.2.0';

export declare const CONTRACT_VERSION: string;

/** The contract's reasons for refusing a host call. */
export type ErrorCode = wit.ErrorCode;
/** The contract's `connect` answer (build it with `Connect`). */
export type ConnectResult = wit.Connect;
/** The contract's `flow` answer (build it with `Flow`). */
export type FlowResult = wit.Flow;

export declare class WasmsockError extends Error {
  readonly code: ErrorCode | string;
}

export type MessageLike = Message | string | Uint8Array | ArrayBuffer;

export declare class Message {
  readonly kind: 'text' | 'binary';
  readonly data: string | Uint8Array;
  static text(text: string): Message;
  static binary(bytes: Uint8Array | ArrayBuffer | string): Message;
  static json(value: unknown): Message;
  static from(value: MessageLike): Message;
  readonly isText: boolean;
  readonly text: string;
  readonly bytes: Uint8Array;
  json<T = any>(): T;
}

export declare class Identity {
  constructor(id: string, claims?: string | object);
  readonly id: string;
  readonly claims: string;
  claimsJson<T = any>(): T;
}

export declare class Conn {
  constructor(id: bigint | number);
  readonly id: bigint;
  send(msg: MessageLike): void;
  sendJson(value: unknown): void;
  close(code?: number, reason?: string): void;
  identity(): Identity | undefined;
  attachment(): Uint8Array | undefined;
  setAttachment(data: Uint8Array | string): void;
  attachmentJson<T = any>(): T | undefined;
  setAttachmentJson(value: unknown): void;
  join(room: string): void;
  leave(room: string): boolean;
  rooms(): string[];
}

export declare class Request {
  readonly route: string;
  readonly path: string;
  readonly query: string;
  readonly headers: Array<[string, string]>;
  readonly remoteAddr: string;
  readonly clientCertSubject?: string;
  readonly identity?: Identity;
  header(name: string): string | undefined;
  queryParam(name: string): string | undefined;
  protocols(): string[];
}

export declare const Connect: {
  accept(protocol?: string): ConnectResult;
  acceptAs(identity: Identity | string, protocol?: string): ConnectResult;
  reject(status: number, reason: string): ConnectResult;
};

export declare const Flow: {
  pass(): FlowResult;
  forward(msg: MessageLike): FlowResult;
  done(): FlowResult;
};

export declare const rooms: {
  publish(room: string, msg: MessageLike, except?: Conn | bigint | number): number;
  members(room: string, limit?: number): Conn[];
  count(room: string): number;
};

export declare const kv: {
  get(key: string): Uint8Array | undefined;
  getText(key: string): string | undefined;
  set(key: string, value: Uint8Array | string): void;
  delete(key: string): boolean;
  getJson<T = any>(key: string): T | undefined;
  setJson(key: string, value: unknown): void;
  increment(key: string, delta?: number): number;
  compareAndSet(key: string, expected: Uint8Array | string | undefined, next: Uint8Array | string | undefined): boolean;
  list(prefix?: string, after?: string, limit?: number): { keys: string[]; next?: string };
};

export declare const log: Record<'trace' | 'debug' | 'info' | 'warn' | 'error', (message: unknown) => void>;

export declare function config(key: string): string | undefined;

/** What a plugin implements; every method is optional. */
export interface Plugin {
  onConnect?(conn: Conn, req: Request): ConnectResult | void;
  onMessage?(conn: Conn, msg: Message): FlowResult | void;
  onClose?(conn: Conn, code: number, reason: string): void;
}

/** The contract's `handler` export: what `definePlugin` returns and the module exports. */
export type Handler = typeof import('wasmsock:plugin/handler@0.2.0');

export declare function definePlugin(plugin: Plugin): Handler;
