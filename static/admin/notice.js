// The result line under the header (#kill-result): what the last action did.
// It is a polite live region that stays in the DOM (an element that appears
// and speaks in the same instant is often not announced); empty means hidden.

import {byId, fill, h} from './dom.js';

/** kind: 'busy' | 'ok' | 'warn' | 'error'. parts: strings or nodes (rendered as text). */
export function showNotice(kind, ...parts) {
  const region = byId('kill-result');
  region.dataset.kind = kind;
  fill(region, h('span', {class: 'notice-text'}, ...parts));
  byId('kill-result-dismiss').hidden = kind === 'busy';
}

export function clearNotice() {
  const region = byId('kill-result');
  delete region.dataset.kind;
  region.replaceChildren();
  byId('kill-result-dismiss').hidden = true;
}

/** After a re-render removed the focused button, park focus on the result. */
export function focusNoticeIfLost() {
  const active = document.activeElement;
  if (!active || active === document.body || !active.isConnected) byId('kill-result').focus();
}

export function setupNotice() {
  byId('kill-result-dismiss').addEventListener('click', () => {
    clearNotice();
    byId('main').focus();
  });
}
