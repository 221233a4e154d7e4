// Latch browser client demo: login, connect, live refresh, being logged out.
// The rules it follows are explained in docs/guide-browser.md.
"use strict";

(() => {
  // Memory only. Never localStorage/sessionStorage: any script injected into
  // the page could read those; it cannot read an HttpOnly cookie.
  const state = { accessToken: null, expiresAt: 0, socket: null, refreshes: 0 };
  const REFRESH_MARGIN_MS = 30_000;

  const SESSION_ENDED = {
    token_expired: "Your token expired before it could be refreshed. Sign in again.",
    session_revoked: "An administrator signed you out.",
    logged_out: "You signed out (here or in another tab).",
    user_disabled: "Your account has been disabled.",
    refresh_reused: "Signed out for safety: an old refresh token was used again (possible theft).",
    role_changed: "Your role changed. Sign in again.",
    password_changed: "Your password was changed. Sign in again.",
  };

  const $ = (id) => document.getElementById(id);

  function log(text) {
    const item = document.createElement("li");
    item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
    $("log").append(item);
  }

  function show(status, detail = "") {
    $("status").textContent = status;
    $("status").dataset.state = status;
    $("detail").textContent = detail;
    $("login-form").hidden = !["signed-out", "ended", "error"].includes(status);
    $("session").hidden = status !== "connected";
  }

  class ApiError extends Error {
    constructor(status, code) { super(code || `HTTP ${status}`); this.status = status; this.code = code; }
  }

  async function api(path, { body, bearer = false } = {}) {
    // X-Requested-With: a cookie refresh must prove it comes from our own script (CSRF).
    const headers = { "X-Requested-With": "XMLHttpRequest" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (bearer) headers.Authorization = `Bearer ${state.accessToken}`;
    const resp = await fetch(path, {
      method: "POST", headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = resp.status === 204 ? null : await resp.json().catch(() => null);
    if (!resp.ok) throw new ApiError(resp.status, data && data.error && data.error.code);
    return data;
  }

  function keep(grant) {
    state.accessToken = grant.access_token;
    state.expiresAt = Date.now() + grant.expires_in * 1000;
    $("user").textContent = grant.user.username;
  }

  async function login(username, password) {
    // transport "cookie": the refresh token arrives as an HttpOnly cookie, and the
    // access token is bound to a second HttpOnly cookie (the fingerprint).
    keep(await api("/auth/login", { body: { username, password, transport: "cookie",
                                             device: "browser demo" } }));
    log("signed in");
  }

  async function refresh() {
    // No body: the browser sends the refresh cookie (Path=/auth) by itself.
    keep(await api("/auth/refresh"));
    return state.accessToken;
  }

  async function freshToken() {
    if (!state.accessToken || state.expiresAt - Date.now() < REFRESH_MARGIN_MS) return refresh();
    return state.accessToken;
  }

  function signedOut(detail) {
    state.accessToken = null;
    if (state.socket) { state.socket.disconnect(); state.socket = null; }
    show("signed-out", detail);
  }

  function connect() {
    // `auth` is a function: socket.io-client calls it on every (re)connection,
    // so a reconnect never presents a token that expired meanwhile.
    const socket = io({
      auth: (cb) => { freshToken().then((token) => cb({ token }), () => cb({})); },
    });
    state.socket = socket;
    state.refreshes = 0;

    socket.on("session", (data) => {
      $("expires").textContent = new Date(data.expires_at * 1000).toLocaleTimeString();
      show("connected");
      log(`connected as ${data.user.username}`);
    });

    socket.on("token_expiring", async () => {
      try {
        const token = await refresh();
        const ack = await socket.timeout(5000).emitWithAck("refresh", { token });
        if (!ack.ok) { log(`refresh refused: ${ack.error.code}`); return; }
        state.refreshes += 1;
        $("refreshes").textContent = String(state.refreshes);
        $("refreshes").dataset.count = String(state.refreshes);
        $("expires").textContent = new Date(ack.expires_at * 1000).toLocaleTimeString();
        log("token refreshed");
      } catch (err) {
        log(`refresh failed: ${err.code || err.message}`);
        if (err instanceof ApiError && err.status === 401) signedOut("Your session is over.");
      }
    });

    socket.on("session_ended", ({ code, message }) => {
      // The server disconnects right after ("io server disconnect"): no automatic
      // reconnection. Forget the token; the refresh cookie is dead server-side.
      log(`session ended: ${code}`);
      state.accessToken = null;
      state.socket = null;
      show("ended", SESSION_ENDED[code] || message);
      $("status").dataset.code = code;
    });

    socket.on("connect_error", async (err) => {
      const code = err.message;  // err.data = {code, message} for a refused handshake
      log(`connect_error: ${code}`);
      if (socket.active) return;  // a transport problem: socket.io retries by itself
      if (code === "token_expired" || code === "token_invalid" || code === "token_missing") {
        try { state.accessToken = null; await refresh(); socket.connect(); }
        catch { signedOut("Please sign in."); }
      } else if (code === "session_revoked" || code === "user_disabled") {
        signedOut(SESSION_ENDED[code]);
      } else {
        show("error", err.data && err.data.message ? err.data.message : code);
      }
    });

    socket.on("disconnect", (reason) => log(`disconnected: ${reason}`));
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await login($("username").value, $("password").value);
      $("password").value = "";
      connect();
    } catch (err) {
      show("signed-out", err.code === "too_many_attempts" ? "Too many attempts; wait a little."
                                                          : "Wrong username or password.");
    }
  });

  $("logout").addEventListener("click", async () => {
    try { await api("/auth/logout", { bearer: true }); } catch (err) { log(`logout: ${err.message}`); }
  });

  // A reload loses the in-memory token but not the HttpOnly refresh cookie:
  // try a silent refresh before asking for the password.
  refresh().then(() => { log("resumed with the refresh cookie"); connect(); },
                 () => show("signed-out"));
})();
