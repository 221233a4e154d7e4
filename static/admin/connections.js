// Live connections screen: counters, chart, the grouped table (user → session
// → socket) and the two force-logout buttons.

import {api, currentUser, serverNow} from './api.js';
import {SocketChart} from './chart.js';
import {confirmAction} from './confirm.js';
import {byId, cell, fill, h, rememberFocus, setText} from './dom.js';
import {duration, iso, killSummary, plural, shortId, until} from './format.js';
import {focusNoticeIfLost, showNotice} from './notice.js';
import {Presence} from './presence.js';

const PAGE = 1000;
const MAX_PAGES = 20;
const SAMPLE_MS = 5000;
const RESYNC_MS = 5 * 60_000; // safety net against a missed event
const STALE_GRACE = 5; // s past expires_at before asking whether the socket refreshed
const STALE_RETRY_MS = 30_000;
const COLUMNS = 7;

let presence = new Presence();
let chart = null;
let timers = [];
let renderTimer = 0;
let loaded = false;
let loading = null; // promise of the snapshot in flight
let again = false; // another snapshot was asked for while one was loading
const staleAsked = new Map(); // session_id → ms of the last re-check

export function setupConnections() {
  chart = new SocketChart(byId('chart'), byId('chart-summary'));
  byId('search').addEventListener('input', render);
  byId('connections').addEventListener('click', onClick);
  render();
}

/** Signed in: start ticking, sampling and the first snapshot. */
export function startConnections() {
  stopConnections();
  timers = [
    setInterval(tick, 1000),
    setInterval(() => loaded && chart.sample(presence.sockets.size), SAMPLE_MS),
    setInterval(() => loadSnapshot(), RESYNC_MS),
  ];
  loadSnapshot();
}

/** Signed out: forget everything. */
export function stopConnections() {
  timers.forEach(clearInterval);
  timers = [];
  presence = new Presence();
  loaded = false;
  staleAsked.clear();
  chart?.reset();
  render();
}

/** An event from /admin/events. "hello" (a (re)connected stream) and "resync" (events were dropped or a node was lost) mean: reload the list. */
export function connectionsEvent(name, data) {
  if (presence.apply(name, data)) scheduleRender();
  if (name === 'hello' || name === 'resync') loadSnapshot();
}

/** Replace the model with GET /admin/connections (all pages); events arriving meanwhile are replayed. */
export function loadSnapshot() {
  if (loading) {
    again = true;
    return loading;
  }
  loading = (async () => {
    presence.beginSnapshot();
    try {
      const {connections, nodes, total} = await fetchAll();
      presence.endSnapshot(connections, nodes);
      loaded = true;
      setText(byId('connections-status'), connections.length < total ? `Showing ${connections.length} of ${total} sockets.` : '');
      if (!chart.samples.length) chart.sample(presence.sockets.size);
    } catch (err) {
      presence.abortSnapshot();
      setText(byId('connections-status'), `Could not load connections: ${err.message}`);
    } finally {
      loading = null;
      render();
    }
    if (again) {
      again = false;
      await loadSnapshot();
    }
  })();
  return loading;
}

async function fetchAll() {
  const connections = [];
  let nodes = [];
  let total = 0;
  for (let page = 0; page < MAX_PAGES; page++) {
    const offset = connections.length;
    const answer = await api(`/admin/connections?limit=${PAGE}${offset ? `&offset=${offset}` : ''}`);
    connections.push(...answer.connections);
    nodes = answer.nodes ?? nodes;
    total = answer.total ?? connections.length;
    if (!answer.connections.length || connections.length >= total) break;
  }
  return {connections, nodes, total};
}

function scheduleRender() {
  // Batch bursts of events (a node restart disconnects hundreds at once).
  if (!renderTimer) renderTimer = setTimeout(render, 50);
}

function render() {
  clearTimeout(renderTimer);
  renderTimer = 0;
  renderCounts();
  const table = byId('connections');
  const restore = rememberFocus(table);
  const query = byId('search').value.trim();
  const groups = presence.groups(query);
  table.querySelectorAll('tbody').forEach((body) => body.remove());
  table.append(...(groups.length ? groups.map(userGroup) : [emptyBody(query)]));
  restore();
  tick();
  const shown = groups.reduce((n, g) => n + g.socketCount, 0);
  setText(byId('search-note'), query ? `${plural(shown, 'socket')} of ${presence.sockets.size} match` : '');
}

function renderCounts() {
  const counts = presence.counts();
  if (loaded) chart?.setLive(counts.sockets);
  setText(byId('count-sockets'), counts.sockets);
  setText(byId('count-users'), counts.users);
  setText(byId('count-nodes'), counts.nodes.length);
  fill(
    byId('node-counts'),
    counts.nodes.length
      ? counts.nodes.map(([node, n]) => h('li', {}, h('span', {class: 'node-name'}, node), ' ', h('strong', {}, n)))
      : h('li', {class: 'muted'}, 'no nodes reporting'),
  );
}

function emptyBody(query) {
  let text = 'No one is connected.';
  if (!loaded) text = 'Loading connections…';
  else if (query) text = `No connections match “${query}”.`;
  return h('tbody', {}, h('tr', {class: 'empty-row'}, h('td', {colspan: COLUMNS, class: 'empty'}, text)));
}

function userGroup({user, sessions, socketCount}) {
  const mine = currentUser()?.user.id === user.id;
  const body = h('tbody', {class: 'user-group', data: {userId: user.id}});
  body.append(
    h('tr', {class: 'user-row'},
      h('th', {scope: 'rowgroup', colspan: COLUMNS - 1},
        h('span', {class: 'user-name'}, user.username),
        user.role === 'admin' && h('span', {class: 'badge'}, 'admin'),
        mine && h('span', {class: 'badge you'}, 'you'),
        h('span', {class: 'meta'}, `${plural(socketCount, 'socket')} · ${plural(sessions.length, 'session')}`)),
      h('td', {class: 'actions'},
        h('button', {
          type: 'button', class: 'danger-outline',
          data: {action: 'revoke-user', userId: user.id},
          'aria-label': `Log out ${user.username} everywhere`,
        }, 'Log out everywhere'))),
  );
  for (const session of sessions) body.append(sessionRow(user, session), ...session.sockets.map(socketRow));
  return body;
}

function sessionRow(user, session) {
  const device = session.device || 'Unknown device';
  const agent = session.sockets[0]?.user_agent;
  return h('tr', {class: 'session-row', data: {sessionId: session.id}},
    h('td', {colspan: COLUMNS - 1},
      h('span', {class: 'device'}, device),
      h('span', {class: 'meta'}, `session ${shortId(session.id)} · ${plural(session.sockets.length, 'socket')}`),
      agent && h('span', {class: 'agent', title: agent}, agent)),
    h('td', {class: 'actions'},
      h('button', {
        type: 'button', class: 'danger-outline',
        data: {action: 'revoke-session', sessionId: session.id},
        'aria-label': `Log out ${user.username}'s session on ${device}`,
      }, 'Log out session')));
}

function socketRow(c) {
  return h('tr', {class: 'socket-row', data: {socketId: c.socket_id}},
    cell('Socket', {class: 'socket-id'},
      h('span', {class: 'sr-only'}, `${c.user.username} · ${c.device || 'Unknown device'} · socket `),
      h('code', {title: c.socket_id}, shortId(c.socket_id))),
    cell('Node', {}, c.node),
    cell('Transport', {}, c.transport),
    cell('IP', {}, h('code', {}, c.ip ?? '—')),
    cell('Connected for', {class: 'num'}, ticking('since', c.connected_at)),
    cell('Token expires in', {class: 'num'}, ticking('until', c.expires_at)),
    h('td', {class: 'actions'}));
}

/** A <time> that tick() rewrites every second ('since' counts up, 'until' down). */
function ticking(kind, epochSeconds) {
  if (!Number.isFinite(Number(epochSeconds)) || epochSeconds === null) return '—';
  return h('time', {datetime: iso(epochSeconds), data: {[kind]: epochSeconds}});
}

/** Every second: advance the relative times; re-check sockets whose token looks expired. */
function tick() {
  const now = serverNow();
  const table = byId('connections');
  for (const t of table.querySelectorAll('[data-since]')) t.textContent = duration(now - Number(t.dataset.since));
  for (const t of table.querySelectorAll('[data-until]')) {
    const left = Number(t.dataset.until) - now;
    t.textContent = until(Number(t.dataset.until), now);
    t.classList.toggle('soon', left > 0 && left < 60);
    t.classList.toggle('expired', left <= 0);
  }
  recheckExpired(now);
}

// The feed has no "token refreshed" event: a socket still listed well past its
// expires_at has refreshed (the server ends unrefreshed ones within 1 s), so
// ask for that session's sockets again to learn the new expiry.
function recheckExpired(now) {
  if (!loaded || loading) return;
  const due = new Set();
  for (const c of presence.sockets.values()) {
    if (c.expires_at && c.expires_at < now - STALE_GRACE && Date.now() - (staleAsked.get(c.session_id) ?? 0) > STALE_RETRY_MS) {
      due.add(c.session_id);
    }
  }
  for (const id of [...due].slice(0, 10)) {
    staleAsked.set(id, Date.now());
    api(`/admin/connections?session=${encodeURIComponent(id)}&limit=100`)
      .then((answer) => {
        presence.replaceSession(id, answer.connections);
        scheduleRender();
      })
      .catch(() => {}); // retried after STALE_RETRY_MS
  }
}

function onClick(event) {
  const button = event.target.closest('button[data-action]');
  if (button?.dataset.action === 'revoke-session') revokeSession(button.dataset.sessionId);
  if (button?.dataset.action === 'revoke-user') revokeUser(button.dataset.userId);
}

async function revokeSession(sessionId) {
  const sockets = [...presence.sockets.values()].filter((c) => c.session_id === sessionId);
  if (!sockets.length) return;
  const {user} = sockets[0];
  const device = sockets[0].device || 'Unknown device';
  const label = `${user.username} · ${device}`;
  const ok = await confirmAction({
    title: 'Log out this session?',
    body: [
      h('p', {}, 'User ', h('strong', {}, user.username), ' on ', h('strong', {}, device), '.'),
      h('p', {}, `${plural(sockets.length, 'socket')} will be disconnected on every node, and the session can no longer be refreshed.`),
      currentUser()?.sessionId === sessionId && h('p', {class: 'warn'}, 'This is your own session: you will be signed out.'),
    ],
    ok: 'Log out session',
    fallback: byId('kill-result'),
  });
  if (ok) await kill(`/admin/sessions/${encodeURIComponent(sessionId)}/revoke`, label, () => presence.removeSession(sessionId));
}

async function revokeUser(userId) {
  const groups = presence.groups().filter((g) => g.user.id === userId);
  if (!groups.length) return;
  const [{user, sessions, socketCount}] = groups;
  const ok = await confirmAction({
    title: `Log out ${user.username} everywhere?`,
    body: [
      h('p', {}, 'Every session of ', h('strong', {}, user.username), ' will be revoked, including the ',
        `${plural(sessions.length, 'connected session')} (${plural(socketCount, 'socket')}) shown here.`),
      h('p', {}, 'They will have to sign in again on every device.'),
      currentUser()?.user.id === userId && h('p', {class: 'warn'}, 'This is your own account: you will be signed out.'),
    ],
    ok: 'Log out everywhere',
    fallback: byId('kill-result'),
  });
  if (ok) await kill(`/admin/users/${encodeURIComponent(userId)}/revoke`, user.username, () => presence.removeUser(userId));
}

/** POST a revoke, report the kill result, and drop the sockets locally (the feed may be down). */
async function kill(path, label, dropLocally) {
  showNotice('busy', `Logging out ${label}…`);
  try {
    const result = await api(path, {method: 'POST', body: {reason: 'admin dashboard'}});
    const {text, confirmed} = killSummary(result);
    showNotice(confirmed ? 'ok' : 'warn', h('strong', {}, label), ` — ${text}`);
    dropLocally();
  } catch (err) {
    if (err.status === 404) dropLocally();
    showNotice('error', `Could not log out ${label}: ${err.message}`);
  }
  render();
  focusNoticeIfLost();
}
