#!/usr/bin/env node
// Runs one scenario against Latch with the official socket.io-client and
// reports what the client observed, so the Python tests can assert on what a
// real browser-side client sees (CONTRACT §4).
//
// Protocol
// --------
// Input, from the environment (or --name=value arguments, which win; prefer
// the environment for tokens, since arguments show up in `ps`):
//   SCENARIO    "connect" or "refused"                      (--scenario)
//   URL         server base URL, e.g. http://127.0.0.1:8123   (--url)
//   TOKEN       access token for auth: {token}; empty = no auth at all (--token)
//   NEW_TOKEN   token sent in the `refresh` event (connect only; empty = skip
//               the refresh)                                 (--new-token)
//   TIMEOUT_MS  overall deadline, default 20000              (--timeout-ms)
//   TRANSPORTS  comma-separated, default "websocket"         (--transports)
//
// Output, on stdout, one JSON object per line:
//   connect:  {"ready": true} once the `session` event and the refresh ack (if
//             any) have arrived: the caller revokes the session then. Then one
//             result line, when the server disconnects the socket:
//             {"scenario": "connect", "connected": true, "socket_id": ...,
//              "session": <`session` payload>, "refresh_ack": <ack or null>,
//              "session_ended": <`session_ended` payload or null>,
//              "disconnect_reason": "io server disconnect", "events": [...]}
//   refused:  one result line:
//             {"scenario": "refused", "connected": false,
//              "connect_error": {"message": err.message, "data": err.data}}
//             (if the server accepts the socket instead: "connected": true and
//              "session" as above; the test decides.)
// "events" lists every server event received, in order, as {event, args}.
//
// Exit codes: 0 the scenario ran to its end (the test judges what was seen);
// 1 bad input or an unexpected connect_error in "connect", 2 timeout. On 1
// and 2 the last line is {"error": "...", "detail": "...", "stage": "...",
// "scenario": ..., "observed": {...}}; only such a line has an "error" key.

import { io } from "socket.io-client";

function options() {
  const opts = {
    scenario: process.env.SCENARIO ?? "",
    url: process.env.URL ?? "",
    token: process.env.TOKEN ?? "",
    newToken: process.env.NEW_TOKEN ?? "",
    timeoutMs: Number(process.env.TIMEOUT_MS ?? 20000),
    transports: (process.env.TRANSPORTS ?? "websocket").split(","),
  };
  for (const arg of process.argv.slice(2)) {
    const match = /^--([a-z-]+)=(.*)$/s.exec(arg);
    if (!match) continue;
    const [, name, value] = match;
    if (name === "scenario") opts.scenario = value;
    else if (name === "url") opts.url = value;
    else if (name === "token") opts.token = value;
    else if (name === "new-token") opts.newToken = value;
    else if (name === "timeout-ms") opts.timeoutMs = Number(value);
    else if (name === "transports") opts.transports = value.split(",");
  }
  return opts;
}

const opts = options();
const observed = { scenario: opts.scenario, connected: false, events: [] };
let socket = null;
let stage = "start";

function emitLine(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function finish(code, line) {
  clearTimeout(timer);
  if (socket) {
    socket.removeAllListeners();
    socket.io.removeAllListeners();
    socket.disconnect();
  }
  // Exit only once stdout is flushed: a pipe write may be asynchronous.
  process.stdout.write(JSON.stringify(line) + "\n", () => process.exit(code));
}

function fail(code, error, detail) {
  finish(code, { error, detail, stage, scenario: opts.scenario, observed });
}

const timer = setTimeout(
  () => fail(2, "timeout", `no outcome within ${opts.timeoutMs} ms`),
  opts.timeoutMs,
);

function connectSocket() {
  const auth = opts.token ? { token: opts.token } : undefined;
  socket = io(opts.url, {
    auth,
    transports: opts.transports,
    reconnection: false,
    autoConnect: false,
    forceNew: true,
  });
  socket.onAny((event, ...args) => observed.events.push({ event, args }));
  return socket;
}

function scenarioConnect() {
  const s = connectSocket();
  stage = "connecting";
  s.on("connect_error", (err) => {
    observed.connect_error = { message: err.message, data: err.data ?? null };
    fail(1, "connect_error", err.message);
  });
  s.on("connect", () => {
    observed.connected = true;
    observed.socket_id = s.id;
    stage = "waiting for session";
  });
  s.on("session", (payload) => {
    observed.session = payload;
    if (!opts.newToken) {
      observed.refresh_ack = null;
      stage = "waiting for disconnect";
      emitLine({ ready: true });
      return;
    }
    stage = "waiting for refresh ack";
    s.timeout(Math.max(1, opts.timeoutMs - 1000)).emit(
      "refresh",
      { token: opts.newToken },
      (err, ack) => {
        if (err) {
          fail(2, "timeout", "no ack for refresh");
          return;
        }
        observed.refresh_ack = ack;
        stage = "waiting for disconnect";
        emitLine({ ready: true });
      },
    );
  });
  s.on("session_ended", (payload) => {
    observed.session_ended = payload;
  });
  s.on("disconnect", (reason) => {
    observed.disconnect_reason = reason;
    observed.session_ended ??= null;
    finish(0, observed);
  });
  s.connect();
}

function scenarioRefused() {
  const s = connectSocket();
  stage = "connecting";
  s.on("connect_error", (err) => {
    observed.connect_error = { message: err.message, data: err.data ?? null };
    finish(0, observed);
  });
  s.on("connect", () => {
    observed.connected = true;
    observed.socket_id = s.id;
    stage = "connected unexpectedly; waiting for session";
  });
  s.on("session", (payload) => {
    observed.session = payload;
    finish(0, observed);
  });
  s.connect();
}

if (!opts.url) {
  fail(1, "bad_input", "URL is required");
} else if (opts.scenario === "connect") {
  scenarioConnect();
} else if (opts.scenario === "refused") {
  scenarioRefused();
} else {
  fail(1, "bad_input", `unknown SCENARIO ${JSON.stringify(opts.scenario)}`);
}
