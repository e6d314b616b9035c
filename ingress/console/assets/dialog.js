// Modal confirmation: every action that changes something asks first, in a
// <dialog> that says what will happen, to what.

import { h } from './dom.js';

let openDialogs = 0;

/** True while a dialog is open: live refresh waits, so the page does not change under the operator. */
export function dialogOpen() {
  return openDialogs > 0;
}

/**
 * Ask before acting. `body` is nodes or text; `fields` are extra form controls read back
 * by the caller. Resolves true (confirmed) or false (Back, Escape).
 */
export function confirmAction({ title, body, confirmLabel = 'Confirm', danger = false, fields = [] }) {
  return new Promise((resolve) => {
    const confirm = h('button', { type: 'submit', class: danger ? 'danger' : 'primary', value: 'confirm' }, confirmLabel);
    const cancel = h('button', { type: 'button', class: 'secondary' }, 'Back');
    const form = h(
      'form',
      { method: 'dialog' },
      h('h2', null, title),
      h('div', { class: 'dialog-body' }, body),
      fields,
      h('div', { class: 'dialog-buttons' }, cancel, confirm),
    );
    const dialog = h('dialog', { class: 'confirm', 'aria-label': title }, form);
    let confirmed = false;
    form.addEventListener('submit', (event) => {
      if (!form.reportValidity()) {
        event.preventDefault();
        return;
      }
      confirmed = true;
    });
    cancel.addEventListener('click', () => dialog.close());
    dialog.addEventListener('close', () => {
      openDialogs -= 1;
      dialog.remove();
      resolve(confirmed);
    });
    document.body.append(dialog);
    openDialogs += 1;
    dialog.showModal();
    confirm.focus();
  });
}
