// Audit log screen: newest 50 entries, then "Older entries" pages with before=next_before.

import {api} from './api.js';
import {byId, cell, fill, h, setText} from './dom.js';
import {detailPairs, iso, when} from './format.js';

const PAGE = 50;
const COLUMNS = 6;

let entries = [];
let nextBefore = null;
let state = 'idle'; // idle | loading | loaded | error

export function setupAudit() {
  byId('audit-older').addEventListener('click', () => loadAudit({older: true}));
  byId('audit-refresh').addEventListener('click', () => loadAudit());
  render();
}

/** GET /admin/audit: the newest page, or (older: true) the page before the last one shown. */
export async function loadAudit({older = false} = {}) {
  if (older && nextBefore === null) return;
  state = 'loading';
  const older_ = byId('audit-older');
  older_.disabled = true;
  if (!older) render();
  try {
    const query = older ? `?limit=${PAGE}&before=${encodeURIComponent(nextBefore)}` : `?limit=${PAGE}`;
    const answer = await api(`/admin/audit${query}`);
    entries = older ? [...entries, ...answer.entries] : answer.entries;
    nextBefore = answer.next_before ?? null;
    state = 'loaded';
    setText(byId('audit-status'), '');
  } catch (err) {
    state = 'error';
    setText(byId('audit-status'), `Could not load the audit log: ${err.message}`);
  }
  older_.disabled = false;
  render();
}

export function resetAudit() {
  entries = [];
  nextBefore = null;
  state = 'idle';
  render();
}

function render() {
  const body = byId('audit').tBodies[0];
  if (entries.length) fill(body, entries.map(entryRow));
  else {
    const text = state === 'loaded' ? 'Nothing has been recorded yet.' : state === 'error' ? 'The audit log could not be loaded.' : 'Loading the audit log…';
    fill(body, h('tr', {class: 'empty-row'}, h('td', {colspan: COLUMNS, class: 'empty'}, text)));
  }
  byId('audit-older').hidden = nextBefore === null;
}

function entryRow(e) {
  const pairs = detailPairs(e.detail);
  return h('tr', {data: {auditId: e.id}},
    cell('When', {class: 'nowrap'}, h('time', {datetime: iso(e.at)}, when(e.at))),
    cell('Actor', {}, e.actor ? e.actor.username : h('span', {class: 'muted'}, 'system')),
    cell('Action', {}, h('code', {}, e.action)),
    cell('Target', {}, e.target ? h('code', {class: 'wrap'}, e.target) : '—'),
    cell('IP', {}, e.ip ? h('code', {}, e.ip) : '—'),
    cell('Detail', {class: 'detail'},
      pairs.length
        ? pairs.map(([k, v]) => h('span', {class: 'pair'}, k && h('span', {class: 'key'}, `${k}: `), v))
        : '—'));
}
