// Users screen: list, create, change role, disable/enable. A role change or a
// disable revokes every session of that user server-side, so both ask first.

import {ApiError, api, currentUser} from './api.js';
import {confirmAction} from './confirm.js';
import {byId, cell, fill, h, rememberFocus, setText} from './dom.js';
import {iso, killSummary, plural, when} from './format.js';
import {focusNoticeIfLost, showNotice} from './notice.js';

const PAGE = 200;
const COLUMNS = 6;

let users = []; // user + {sessions_active, online}
let total = 0;
let state = 'idle'; // idle | loading | loaded | error

export function setupUsers() {
  byId('user-create-form').addEventListener('submit', onCreate);
  byId('users').addEventListener('click', onClick);
  byId('users-more').addEventListener('click', () => loadUsers({more: true}));
  render();
}

/** GET /admin/users (first page, or the next one with more: true). */
export async function loadUsers({more = false} = {}) {
  state = 'loading';
  if (!more) render();
  try {
    const offset = more ? users.length : 0;
    const answer = await api(`/admin/users?limit=${PAGE}&offset=${offset}`);
    users = more ? mergeById(users, answer.users) : answer.users;
    total = answer.total ?? users.length;
    state = 'loaded';
    setText(byId('users-status'), '');
  } catch (err) {
    state = 'error';
    setText(byId('users-status'), `Could not load users: ${err.message}`);
  }
  render();
}

/** user_changed from the live feed: update the row in place. */
export function usersEvent(name, data) {
  if (name !== 'user_changed' || !data?.user) return;
  if (upsert(data.user)) render();
}

export function resetUsers() {
  users = [];
  total = 0;
  state = 'idle';
  byId('user-create-form').reset();
  setText(byId('user-create-error'), '');
  render();
}

function mergeById(list, more) {
  const seen = new Set(list.map((u) => u.id));
  return [...list, ...more.filter((u) => !seen.has(u.id))];
}

/** Merge a changed user into the list; returns whether it was listed. */
function upsert(user) {
  const i = users.findIndex((u) => u.id === user.id);
  if (i === -1) return false;
  users[i] = {...users[i], ...user};
  return true;
}

function render() {
  const table = byId('users');
  const restore = rememberFocus(table);
  const body = table.tBodies[0];
  if (users.length) fill(body, users.map(userRow));
  else {
    const text = state === 'loaded' ? 'No users yet.' : state === 'error' ? 'Users could not be loaded.' : 'Loading users…';
    fill(body, h('tr', {class: 'empty-row'}, h('td', {colspan: COLUMNS, class: 'empty'}, text)));
  }
  restore();
  byId('users-more').hidden = users.length >= total;
  setText(byId('users-count'), state === 'loaded' ? plural(total, 'user') : '');
}

function userRow(u) {
  const mine = currentUser()?.user.id === u.id;
  const online = u.online ? 'online' : 'offline';
  return h('tr', {data: {userId: u.id}, class: u.disabled ? 'is-disabled' : null},
    h('th', {scope: 'row'},
      h('span', {class: 'user-name'}, u.username), mine && h('span', {class: 'badge you'}, 'you')),
    cell('Role', {}, h('span', {class: `badge role-${u.role === 'admin' ? 'admin' : 'user'}`}, u.role)),
    cell('Status', {},
      h('span', {class: `pill ${u.disabled ? 'pill-off' : 'pill-on'}`}, u.disabled ? 'Disabled' : 'Active')),
    cell('Sessions', {},
      h('span', {class: `dot dot-${online}`, 'aria-hidden': 'true'}),
      `${online} · ${plural(u.sessions_active ?? 0, 'active session')}`),
    cell('Created', {}, h('time', {datetime: iso(u.created_at)}, when(u.created_at))),
    h('td', {class: 'actions'},
      h('button', {
        type: 'button', data: {action: 'set-role', userId: u.id, role: u.role === 'admin' ? 'user' : 'admin'},
        'aria-label': `${u.role === 'admin' ? 'Make regular user' : 'Make admin'}: ${u.username}`,
      }, u.role === 'admin' ? 'Make user' : 'Make admin'),
      h('button', {
        type: 'button', class: u.disabled ? null : 'danger-outline',
        data: {action: 'toggle-disabled', userId: u.id, disabled: u.disabled ? 'false' : 'true'},
        'aria-label': `${u.disabled ? 'Enable' : 'Disable'} ${u.username}`,
      }, u.disabled ? 'Enable' : 'Disable')));
}

async function onClick(event) {
  const button = event.target.closest('button[data-action]');
  if (!button) return;
  const user = users.find((u) => u.id === button.dataset.userId);
  if (!user) return;
  if (button.dataset.action === 'set-role') await change(user, {role: button.dataset.role});
  if (button.dataset.action === 'toggle-disabled') await change(user, {disabled: button.dataset.disabled === 'true'});
}

/** Confirm, then PATCH /admin/users/{id} with {role} or {disabled}. */
async function change(user, patch) {
  const name = h('strong', {}, user.username);
  const sessions = plural(user.sessions_active ?? 0, 'active session');
  const self = currentUser()?.user.id === user.id
    && h('p', {class: 'warn'}, 'This is your own account: you will be signed out.');
  let dialog;
  if ('role' in patch) {
    dialog = {
      title: patch.role === 'admin' ? `Make ${user.username} an admin?` : `Make ${user.username} a regular user?`,
      body: [h('p', {}, 'The role is part of every token, so ', name, ` is logged out everywhere (${sessions}).`), self],
      ok: patch.role === 'admin' ? 'Make admin' : 'Make user',
    };
  } else if (patch.disabled) {
    dialog = {
      title: `Disable ${user.username}?`,
      body: [h('p', {}, name, ` is logged out everywhere (${sessions}) and can no longer sign in.`), self],
      ok: 'Disable',
    };
  } else {
    dialog = {
      title: `Enable ${user.username}?`,
      body: [h('p', {}, name, ' will be able to sign in again.')],
      ok: 'Enable',
      danger: false,
    };
  }
  if (!(await confirmAction({...dialog, fallback: byId('kill-result')}))) return;

  showNotice('busy', `Updating ${user.username}…`);
  try {
    const answer = await api(`/admin/users/${encodeURIComponent(user.id)}`, {method: 'PATCH', body: patch});
    upsert(answer.user);
    const what = 'role' in patch ? `role is now ${answer.user.role}` : answer.user.disabled ? 'disabled' : 'enabled';
    let kind = 'ok';
    let text = '';
    if (answer.revoked) {
      const summary = killSummary(answer.revoked);
      kind = summary.confirmed ? 'ok' : 'warn';
      text = ` — ${summary.text}`;
      upsert({id: user.id, sessions_active: 0, online: false});
    }
    showNotice(kind, h('strong', {}, answer.user.username), `: ${what}${text}`);
  } catch (err) {
    showNotice('error', `Could not update ${user.username}: ${err.message}`);
  }
  render();
  focusNoticeIfLost();
}

async function onCreate(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const error = byId('user-create-error');
  const submit = byId('user-create-submit');
  setText(error, '');
  const body = {
    username: byId('new-username').value.trim(),
    password: byId('new-password').value,
    role: byId('new-role').value,
  };
  submit.disabled = true;
  try {
    const answer = await api('/admin/users', {method: 'POST', body});
    form.reset();
    users = mergeById([answer.user, ...users], []);
    total += 1;
    render();
    showNotice('ok', 'Created ', h('strong', {}, answer.user.username), ` (${answer.user.role}).`);
    byId('new-username').focus();
  } catch (err) {
    setText(error, err instanceof ApiError && err.code === 'conflict' ? `The name “${body.username}” is taken.` : err.message);
    submit.disabled = false;
    (err.code === 'conflict' ? byId('new-username') : submit).focus();
  } finally {
    submit.disabled = false;
  }
}
