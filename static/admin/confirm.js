// The confirmation dialog (#confirm-dialog). A modal <dialog> opened with
// showModal() makes the rest of the page inert and closes on Esc; this module
// adds the promise, the labels, Tab wrapping and focus return.

import {byId, fill} from './dom.js';

let pending = null; // resolve() of the open dialog

/**
 * Ask before a destructive action. body: strings/nodes (rendered as text).
 * Resolves true on confirm, false on cancel or Esc. Focus returns to the
 * element that opened the dialog or, if a re-render removed it, to `fallback`.
 */
export function confirmAction({title, body, ok = 'Confirm', danger = true, fallback = null}) {
  const dialog = byId('confirm-dialog');
  const okButton = byId('confirm-ok');
  pending?.(false);
  const opener = document.activeElement;

  fill(byId('confirm-title'), title);
  fill(byId('confirm-body'), ...[body].flat());
  okButton.textContent = ok;
  okButton.classList.toggle('danger', danger);
  okButton.classList.toggle('primary', !danger);
  dialog.returnValue = '';
  dialog.showModal();
  byId('confirm-cancel').focus(); // the safe choice is the default one

  return new Promise((resolve) => {
    pending = (answer) => {
      pending = null;
      if (dialog.open) dialog.close();
      const target = opener?.isConnected ? opener : fallback;
      target?.focus();
      resolve(answer);
    };
  });
}

/** Wire the buttons once, at start-up. */
export function setupConfirm() {
  const dialog = byId('confirm-dialog');
  byId('confirm-ok').addEventListener('click', () => pending?.(true));
  byId('confirm-cancel').addEventListener('click', () => pending?.(false));
  // Esc fires "cancel" then "close"; a click on the backdrop counts as cancel.
  dialog.addEventListener('close', () => pending?.(false));
  dialog.addEventListener('click', (event) => {
    if (event.target === dialog) pending?.(false);
  });
  // A modal dialog keeps focus off the page, but Tab may still leave for the
  // browser's own toolbar; wrap between the two buttons instead.
  dialog.addEventListener('keydown', (event) => {
    if (event.key !== 'Tab') return;
    const buttons = [...dialog.querySelectorAll('button:not([disabled])')];
    const first = buttons[0];
    const last = buttons.at(-1);
    if (event.shiftKey && document.activeElement === first) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  });
}
