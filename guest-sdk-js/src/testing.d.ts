import type { Conn, Handler, Identity, Message, MessageLike, ConnectResult, FlowResult } from './index.js';
export { Conn, Identity, Message, Request } from './index.js';

export interface Limits {
  maxMessageSize: number;
  maxSendsPerCall: number;
  maxAttachment: number;
  maxRoomsPerConnection: number;
  maxRoomName: number;
  kvMaxKeys: number;
  kvMaxKey: number;
  kvMaxValue: number;
}
export declare const DEFAULT_LIMITS: Readonly<Limits>;

export interface TestRequest {
  route?: string;
  path?: string;
  query?: string;
  headers?: Array<[string, string]>;
  remoteAddr?: string;
  clientCertSubject?: string;
  identity?: { id: string; claims?: string };
}

/** An in-memory host for unit tests; the newest one answers the plugin's host calls. */
export declare class TestHost {
  constructor(limits?: Partial<Limits>);
  config(key: string, value: string): this;
  open(route: string, identity?: Identity | string): Conn;
  connect(handler: Handler, req: TestRequest): [Conn, ConnectResult];
  message(handler: Handler, conn: Conn, msg: MessageLike): FlowResult;
  close(handler: Handler, conn: Conn, code?: number, reason?: string): void;
  sent(conn: Conn): Message[];
  closeRequested(conn: Conn): [number, string] | undefined;
  isOpen(conn: Conn): boolean;
  members(room: string): Conn[];
  kv(key: string): Uint8Array | undefined;
  logs(): Array<[string, string]>;
}
