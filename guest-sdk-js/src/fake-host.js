// The contract's host interface, answered by the current TestHost (testing.js). Only used in
// Node, through register.js.
function current() {
  const h = globalThis.__wasmsockTestHost;
  if (!h) throw new Error('no TestHost: create one (new TestHost()) before calling plugin code');
  return h;
}

export const send = (conn, msg) => current().hostSend(conn, msg);
export const close = (conn, code, reason) => current().hostClose(conn, code, reason);
export const identityOf = (conn) => current().hostIdentityOf(conn);
export const attachment = (conn) => current().hostAttachment(conn);
export const setAttachment = (conn, data) => current().hostSetAttachment(conn, data);
export const join = (conn, room) => current().hostJoin(conn, room);
export const leave = (conn, room) => current().hostLeave(conn, room);
export const rooms = (conn) => current().hostRooms(conn);
export const publish = (room, msg, except) => current().hostPublish(room, msg, except);
export const members = (room, limit) => current().hostMembers(room, limit);
export const memberCount = (room) => current().hostMemberCount(room);
export const kvGet = (key) => current().hostKvGet(key);
export const kvSet = (key, value) => current().hostKvSet(key, value);
export const kvDelete = (key) => current().hostKvDelete(key);
export const kvIncrement = (key, delta) => current().hostKvIncrement(key, delta);
export const kvCompareAndSet = (key, expected, next) => current().hostKvCompareAndSet(key, expected, next);
export const kvList = (prefix, after, limit) => current().hostKvList(prefix, after, limit);
export const config = (key) => current().hostConfig(key);
export const log = (level, message) => current().hostLog(level, message);
