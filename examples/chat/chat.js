// wasmsock chat: joins a channel of the `rooms` plugin over wss://<this host>/chat, shows
// messages and presence, and reconnects with backoff when the connection drops. On channels with
// history, it remembers the position (offset, epoch) of the last message it showed and
// resubscribes after a reconnect with `since`, so what was published meanwhile is shown once.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_QUEUED = 50;       // messages typed while disconnected, sent after re-joining
const MAX_SHOWN = 500;       // messages kept on the page
const BACKOFF_MIN = 500;     // ms
const BACKOFF_MAX = 15000;   // ms
const STABLE_AFTER = 5000;   // a connection open this long resets the backoff

const state = {
  ws: null,
  status: "disconnected",
  channel: null,
  members: new Set(),
  messages: [],
  queue: [],
  backoff: BACKOFF_MIN,
  retryTimer: null,
  openedAt: 0,
  everOpened: false,
  wanted: false,
  // channel -> {offset, epoch} of the last message shown (channels with history only).
  positions: new Map(),
};

function setStatus(text) {
  state.status = text;
  $("status").textContent = text;
  const live = text.startsWith("connected");
  $("message").disabled = !state.wanted;
  $("send").disabled = !state.wanted;
  document.body.dataset.connected = String(live);
}

function endpoint() {
  const params = new URLSearchParams();
  const token = $("token").value.trim();
  if (token) params.set("token", token);
  else params.set("name", $("name").value.trim());
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/chat?${params}`;
}

function connect() {
  clearTimeout(state.retryTimer);
  if (state.ws) {
    state.ws.onclose = null;
    state.ws.close(1000, "reconnecting");
  }
  state.wanted = true;
  state.channel = $("channel").value.trim() || "lobby";
  state.everOpened = false;
  setStatus("connecting…");
  let ws;
  try {
    ws = new WebSocket(endpoint());
  } catch (e) {
    notice(`cannot connect: ${e.message}`, "error");
    return scheduleRetry();
  }
  state.ws = ws;
  ws.onopen = () => {
    state.openedAt = Date.now();
    state.everOpened = true;
    setStatus("joining…");
    subscribe(state.channel);
  };
  ws.onmessage = (e) => {
    let msg;
    try { msg = JSON.parse(e.data); } catch { return notice("unreadable message from the server", "error"); }
    handle(msg);
  };
  ws.onclose = (e) => {
    state.ws = null;
    state.members.clear();
    renderMembers();
    if (!state.everOpened) notice("connection refused (check your token)", "error");
    else if (e.code !== 1000) notice(`connection closed (${e.code}${e.reason ? ": " + e.reason : ""})`);
    if (Date.now() - state.openedAt >= STABLE_AFTER) state.backoff = BACKOFF_MIN;
    scheduleRetry(!state.everOpened);
  };
}

function scheduleRetry(refused) {
  if (!state.wanted) return;
  const delay = Math.round(state.backoff * (0.5 + Math.random() / 2)); // jitter
  state.backoff = Math.min(state.backoff * 2, BACKOFF_MAX);
  const secs = Math.max(1, Math.round(delay / 1000));
  setStatus(refused ? `refused, retrying in ${secs}s` : `reconnecting in ${secs}s`);
  state.retryTimer = setTimeout(connect, delay);
}

// Subscribes, with the last position seen on this channel when there is one: the server then
// sends what was missed, in order, before its `subscribed` reply.
function subscribe(channel) {
  const since = state.positions.get(channel);
  send(since ? { event: "subscribe", channel, since } : { event: "subscribe", channel });
}

// Remembers the position of a message of a channel with history.
function remember(msg) {
  if (typeof msg.offset === "number" && typeof msg.epoch === "string") {
    state.positions.set(msg.channel, { offset: msg.offset, epoch: msg.epoch });
  }
}

function send(obj) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(obj));
    return true;
  }
  return false;
}

function handle(msg) {
  switch (msg.event) {
    case "subscribed":
      if (msg.channel !== state.channel) return;
      state.members = new Set(msg.members || []);
      renderMembers();
      if (msg.recovered === false && state.positions.has(msg.channel)) {
        notice("some messages published while you were away could not be recovered");
      }
      // Not recovered (or a first subscribe): live messages continue from the channel's position.
      if (msg.recovered !== true) remember(msg);
      setStatus(`connected in #${msg.channel}`);
      flushQueue();
      break;
    case "presence":
      state.members = new Set(msg.users || []);
      renderMembers();
      break;
    case "join":
      if (msg.channel !== state.channel) return;
      state.members.add(msg.user);
      renderMembers();
      notice(`${msg.user} joined`);
      break;
    case "leave":
      if (msg.channel !== state.channel) return;
      state.members.delete(msg.user);
      renderMembers();
      notice(`${msg.user} left`);
      break;
    case "message":
      remember(msg);
      addMessage(msg.from, textOf(msg.data), msg.channel);
      break;
    case "unsubscribed":
      break;
    case "error":
      notice(`error: ${msg.reason}`, "error");
      break;
  }
}

function textOf(data) {
  if (data && typeof data === "object" && typeof data.text === "string") return data.text;
  return typeof data === "string" ? data : JSON.stringify(data);
}

function addMessage(from, text, channel) {
  state.messages.push({ from, text, channel });
  if (state.messages.length > MAX_SHOWN) state.messages.shift();
  const li = document.createElement("li");
  li.className = "message";
  li.dataset.from = from;
  li.dataset.channel = channel;
  const who = document.createElement("span");
  who.className = "from";
  who.textContent = from;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  const time = document.createElement("time");
  time.className = "time";
  time.textContent = new Date().toLocaleTimeString();
  li.append(who, body, time);
  append(li);
}

function notice(text, kind = "notice") {
  const li = document.createElement("li");
  li.className = kind;
  li.textContent = text;
  append(li);
}

function append(li) {
  const list = $("messages");
  list.append(li);
  while (list.children.length > MAX_SHOWN) list.firstChild.remove();
  list.scrollTop = list.scrollHeight;
}

function renderMembers() {
  const list = $("members");
  list.replaceChildren(...[...state.members].sort().map((user) => {
    const li = document.createElement("li");
    li.dataset.user = user;
    li.textContent = user;
    return li;
  }));
}

function sendText(text) {
  text = text.trim();
  if (!text) return false;
  const msg = { event: "publish", channel: state.channel, data: { text } };
  if (state.status.startsWith("connected") && send(msg)) return true;
  if (state.queue.length >= MAX_QUEUED) {
    notice("not connected: message dropped (queue full)", "error");
    return false;
  }
  state.queue.push(msg);
  notice(`not connected: will send when back (${state.queue.length} queued)`);
  return true;
}

function flushQueue() {
  while (state.queue.length) {
    const msg = state.queue.shift();
    msg.channel = state.channel;
    send(msg);
  }
}

$("join").addEventListener("submit", (e) => {
  e.preventDefault();
  const channel = $("channel").value.trim();
  if (state.ws && state.ws.readyState === WebSocket.OPEN && channel !== state.channel) {
    // Same connection, another channel.
    send({ event: "unsubscribe", channel: state.channel });
    state.channel = channel;
    state.members.clear();
    renderMembers();
    setStatus("joining…");
    subscribe(channel);
    return;
  }
  state.backoff = BACKOFF_MIN;
  connect();
});

$("compose").addEventListener("submit", (e) => {
  e.preventDefault();
  if (sendText($("message").value)) $("message").value = "";
});

// For automation and the curious: window.chat.state(), chat.send("hi"), chat.connect(),
// chat.drop() (the connection is lost as if the network went away; the page reconnects).
window.chat = {
  connect,
  send: sendText,
  drop: () => {
    if (state.ws) state.ws.close(4000, "dropped");
    return true;
  },
  state: () => ({
    status: state.status,
    channel: state.channel,
    // The negotiated WebSocket extensions (permessage-deflate when the server compresses).
    extensions: state.ws ? state.ws.extensions : "",
    members: [...state.members].sort(),
    messages: state.messages.slice(),
    positions: Object.fromEntries(state.positions),
  }),
};

(function fromUrl() {
  const q = new URLSearchParams(location.search);
  const h = new URLSearchParams(location.hash.slice(1));
  if (q.get("name")) $("name").value = q.get("name");
  if (q.get("channel")) $("channel").value = q.get("channel");
  const token = h.get("token") || q.get("token");
  if (token) $("token").value = token;
  if (q.get("autoconnect") === "1") connect();
})();
