// fetch() with the Latch browser token flow.
//
// Why the access token lives only in a variable: localStorage and
// sessionStorage are readable by any script that ever runs on this origin and
// outlive the page; a variable dies with the tab. The refresh token is an
// HttpOnly cookie (Path=/auth) that no script can read, so a reload resumes
// the session by calling /auth/refresh, never by reading storage.

const REFRESH_AT = 0.8; // refresh when 80 % of the token's lifetime has passed

let token = null;
let me = null; // {user: {id, username, role}, sessionId}
let lifetime = 0; // seconds, from expires_in
let expiresAt = 0; // local epoch seconds
let timer = 0;
let inflight = null;
let clockOffset = 0; // server clock minus ours, seconds
let generation = 0; // bumped on sign-out, so a late refresh answer cannot revive the session
const lostHandlers = new Set();

/** An error answer ({"error": {code, message}}) or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** Who is signed in: {user, sessionId}, or null. */
export function currentUser() {
  return me;
}

/** Run fn(reason) when the session is lost (refresh refused, revoked, signed out elsewhere). */
export function onSessionLost(fn) {
  lostHandlers.add(fn);
}

/** Now, in epoch seconds on the server's clock (tables compare against server times). */
export function serverNow() {
  return Date.now() / 1000 + clockOffset;
}

/** POST /auth/login in cookie mode; resolves to the user. */
export async function login(username, password) {
  const gen = generation;
  const response = await send('/auth/login', {
    method: 'POST',
    headers: {'Content-Type': 'application/json', 'X-Requested-With': 'fetch'},
    body: JSON.stringify({username, password, device: 'Admin dashboard', transport: 'cookie'}),
  });
  adopt(await parse(response), gen);
  return me.user;
}

/** On page load: resume a session from the refresh cookie. Null when there is none. */
export async function resume() {
  try {
    await refresh();
    return me.user;
  } catch (err) {
    if (err instanceof ApiError && err.status >= 400 && err.status < 500) return null;
    throw err;
  }
}

/**
 * POST /auth/refresh with the cookie. Concurrent callers share one request:
 * the refresh token rotates on every use, and presenting a rotated one counts
 * as theft and kills the session — so two refreshes must never race, not in
 * this page (one promise) and not across tabs (a Web Lock, where supported).
 */
export function refresh() {
  if (!inflight) {
    const gen = generation;
    const run = async () => {
      const response = await send('/auth/refresh', {
        method: 'POST',
        headers: {'Content-Type': 'application/json', 'X-Requested-With': 'fetch'},
        body: '{}',
      });
      adopt(await parse(response), gen);
    };
    const locked = navigator.locks ? navigator.locks.request('latch-admin-refresh', run) : run();
    inflight = locked.finally(() => {
      inflight = null;
    });
  }
  return inflight;
}

/** POST /auth/logout (revokes this session server-side), then forget the token. */
export async function logout() {
  const bearer = token;
  forget();
  if (!bearer) return;
  try {
    await send('/auth/logout', {
      method: 'POST',
      headers: {Authorization: `Bearer ${bearer}`, 'X-Requested-With': 'fetch'},
    });
  } catch {
    // Offline: the token is gone from memory and expires on its own.
  }
}

/** Forget the token without telling anyone or calling the server. */
export function discardSession() {
  forget();
}

/** Forget the session locally and tell listeners why (used for SSE "bye"). */
export function endSession(reason) {
  if (!token && !me) return;
  forget();
  for (const fn of lostHandlers) fn(reason);
}

/**
 * A Bearer request. On 401, refresh once and retry once; if the refresh is
 * refused (or the retry is still 401) the session is over: listeners are told.
 * Resolves to the raw Response (for streams); see api() for JSON.
 */
export async function request(path, {method = 'GET', body, headers = {}, signal} = {}) {
  const init = () => ({
    method,
    signal,
    headers: {
      ...headers,
      Authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : {'Content-Type': 'application/json'}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!token) throw new ApiError(401, 'signed_out', 'You are signed out.');
  let response = await send(path, init());
  if (response.status !== 401) return response;
  await renew();
  response = await send(path, init());
  if (response.status === 401) {
    const err = await errorOf(response);
    endSession(ended(err));
    throw err;
  }
  return response;
}

/** A Bearer JSON request: resolves to the parsed body (null for 204), throws ApiError. */
export async function api(path, options = {}) {
  return parse(await request(path, options));
}

// --- internals ---

async function send(path, init) {
  let response;
  try {
    response = await fetch(path, {credentials: 'same-origin', cache: 'no-store', ...init});
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection.');
  }
  noteServerClock(response);
  return response;
}

async function renew() {
  try {
    await refresh();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) endSession(ended(err));
    throw err;
  }
}

function ended(err) {
  return `Your session has ended (${err.message.replace(/\.$/, '')}). Sign in again.`;
}

async function parse(response) {
  if (response.ok) return response.status === 204 ? null : response.json();
  throw await errorOf(response);
}

/** The ApiError carried by a failed Response. */
export async function errorOf(response) {
  let error = {};
  try {
    error = (await response.json()).error ?? {};
  } catch {
    // Not JSON (a proxy's error page): fall back to the status line.
  }
  return new ApiError(
    response.status,
    error.code ?? `http_${response.status}`,
    error.message ?? `${response.status} ${response.statusText}`.trim(),
    retryAfter(response),
  );
}

/** Retry-After as seconds (it may be a number or an HTTP date). */
function retryAfter(response) {
  const value = response.headers.get('Retry-After');
  if (!value) return null;
  const seconds = /^\d+$/.test(value.trim()) ? Number(value) : (Date.parse(value) - Date.now()) / 1000;
  return Number.isFinite(seconds) ? Math.max(1, Math.ceil(seconds)) : null;
}

function adopt(data, gen) {
  if (gen !== generation) throw new ApiError(401, 'signed_out', 'You are signed out.');
  token = data.access_token;
  me = {user: data.user, sessionId: data.session_id};
  lifetime = Number(data.expires_in) || 60;
  expiresAt = Date.now() / 1000 + lifetime;
  schedule(lifetime * REFRESH_AT);
}

function forget() {
  generation += 1;
  token = null;
  me = null;
  clearTimeout(timer);
}

function schedule(seconds) {
  clearTimeout(timer);
  timer = setTimeout(background, Math.max(5, seconds) * 1000);
}

async function background() {
  try {
    await renew();
  } catch (err) {
    // A refused refresh already ended the session; a network failure is retried.
    if (token && !(err instanceof ApiError && err.status === 401)) schedule(10);
  }
}

// Timers are throttled in hidden tabs: catch up when the tab is shown again.
document.addEventListener('visibilitychange', () => {
  const left = expiresAt - Date.now() / 1000;
  if (document.visibilityState === 'visible' && token && left < lifetime * (1 - REFRESH_AT)) {
    background();
  }
});

// The tables compare server timestamps with "now"; a skewed laptop clock would
// show wrong "expires in" values, so follow the Date header of each answer.
// It has one-second resolution, so only a skew beyond 2 s is corrected.
function noteServerClock(response) {
  const date = Date.parse(response.headers.get('Date') ?? '');
  if (Number.isNaN(date)) return;
  const offset = (date - Date.now()) / 1000 + 0.5;
  clockOffset = Math.abs(offset) > 2 ? offset : 0;
}
