// Bootstrap and router of the admin dashboard: sign-in, the three screens
// (#/connections, #/users, #/audit), the live feed, sign-out.

import {currentUser, discardSession, endSession, login, logout, onSessionLost, resume} from './api.js';
import {loadAudit, resetAudit, setupAudit} from './audit.js';
import {setupConfirm} from './confirm.js';
import {connectionsEvent, setupConnections, startConnections, stopConnections} from './connections.js';
import {byId, setText} from './dom.js';
import {startEvents} from './events.js';
import {clearNotice, setupNotice} from './notice.js';
import {loadUsers, resetUsers, setupUsers, usersEvent} from './users.js';

const VIEWS = {
  connections: {title: 'Live connections', load: null},
  users: {title: 'Users', load: () => loadUsers()},
  audit: {title: 'Audit log', load: () => loadAudit()},
};

let stopFeed = null;
let countdown = 0;

function showScreen(name) {
  for (const id of ['boot', 'signin', 'dashboard']) byId(id).hidden = id !== name;
}

// --- sign-in ---

function signedIn(user) {
  setText(byId('whoami'), user.username);
  clearNotice();
  showScreen('dashboard');
  startConnections();
  stopFeed = startEvents({onEvent, onStatus});
  route();
}

function signedOut({notice = '', error = ''} = {}) {
  stopFeed?.();
  stopFeed = null;
  stopConnections();
  resetUsers();
  resetAudit();
  clearNotice();
  setText(byId('login-notice'), notice);
  byId('login-notice').hidden = !notice;
  setText(byId('login-error'), error);
  byId('login-password').value = '';
  showScreen('signin');
  byId(byId('login-username').value ? 'login-password' : 'login-username').focus();
}

async function onLogin(event) {
  event.preventDefault();
  const username = byId('login-username').value.trim();
  const password = byId('login-password').value;
  const error = byId('login-error');
  byId('login-notice').hidden = true;
  if (!username || !password) {
    setText(error, 'Enter a username and a password.');
    return;
  }
  setText(error, '');
  byId('login-submit').disabled = true;
  try {
    const user = await login(username, password);
    if (user.role !== 'admin') {
      // The session this form just created is useless here: end it right away.
      await logout();
      signedOut({error: `Signed in as ${user.username}, but this account is not an admin. Use an admin account.`});
      return;
    }
    byId('login-password').value = '';
    signedIn(user);
  } catch (err) {
    if (err.code === 'too_many_attempts') startCountdown(err.retryAfter ?? 60);
    else {
      setText(error, err.message);
      byId('login-password').select();
    }
  } finally {
    byId('login-submit').disabled = countdown !== 0;
  }
}

/** 429: keep the button disabled and count down Retry-After. */
function startCountdown(seconds) {
  clearInterval(countdown);
  let left = seconds;
  const show = () => setText(byId('login-error'), `Too many attempts — try again in ${left} s.`);
  show();
  byId('login-submit').disabled = true;
  countdown = setInterval(() => {
    left -= 1;
    if (left > 0) return show();
    clearInterval(countdown);
    countdown = 0;
    setText(byId('login-error'), '');
    byId('login-submit').disabled = false;
  }, 1000);
}

// --- live feed ---

function onEvent(name, data) {
  if (name === 'bye') {
    endSession(`Your session was ended (${data?.code ?? 'session_revoked'}). Sign in again.`);
    return;
  }
  connectionsEvent(name, data);
  usersEvent(name, data);
}

function onStatus(state, detail) {
  const status = byId('live-status');
  status.dataset.state = state;
  const text = {
    connecting: 'Connecting…',
    live: 'Live',
    waiting: `Reconnecting in ${Math.ceil((detail ?? 0) / 1000)} s`,
    stopped: 'Offline',
  }[state];
  setText(byId('live-status-text'), text ?? state);
}

// --- router ---

function route() {
  const name = location.hash.replace(/^#\/?/, '');
  const view = name in VIEWS ? name : 'connections';
  for (const key of Object.keys(VIEWS)) {
    byId(`view-${key}`).hidden = key !== view;
    const nav = byId(`nav-${key}`);
    if (key === view) nav.setAttribute('aria-current', 'page');
    else nav.removeAttribute('aria-current');
  }
  document.title = `${VIEWS[view].title} · Latch admin`;
  if (currentUser()) VIEWS[view].load?.();
}

function setupNav() {
  for (const key of Object.keys(VIEWS)) {
    // "#/users", not "#users": a bare fragment would scroll to the table with that id.
    byId(`nav-${key}`).addEventListener('click', () => {
      if (location.hash === `#/${key}`) route();
      else location.hash = `#/${key}`;
    });
  }
  window.addEventListener('hashchange', route);
}

// --- start ---

async function start() {
  setupNotice();
  setupConfirm();
  setupConnections();
  setupUsers();
  setupAudit();
  setupNav();
  byId('login-form').addEventListener('submit', onLogin);
  byId('logout').addEventListener('click', async () => {
    await logout();
    signedOut({notice: 'You have signed out.'});
  });
  onSessionLost((reason) => signedOut({notice: reason || 'Your session has ended. Sign in again.'}));

  showScreen('boot');
  try {
    // A reload loses the in-memory token; the HttpOnly refresh cookie brings it back.
    const user = await resume();
    if (!user) signedOut();
    else if (user.role === 'admin') signedIn(user);
    else {
      // The cookie belongs to a non-admin session (another app on this origin
      // shares it): forget the token here, but do not log that session out.
      discardSession();
      signedOut({error: `Signed in as ${user.username}, but this account is not an admin. Sign in with an admin account.`});
    }
  } catch (err) {
    signedOut({error: `${err.message} Reload the page to try again.`});
  }
}

start();
