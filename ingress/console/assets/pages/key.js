// One virtual object or workflow key (`/ui/services/{service}/keys/{key}`): its
// state (editable, with a confirmation and Restate's version check), who holds
// its lock, its inbox, its promises (workflows) and its invocations.

import { h, fill, section, table, facts, pageLink, badge, message } from '../dom.js';
import { get, send, query, lit } from '../api.js';
import { confirmAction, dialogOpen } from '../dialog.js';
import { encodeText, hexToBytes, readValue, relative } from '../format.js';
import { stateVersion } from '../state.js';
import { promisesSection } from './promises.js';

const REFRESH_MS = 3000;
const RECENT_INVOCATIONS = 20;

export async function render(ctx) {
  const [serviceName, key] = ctx.params;
  ctx.setTitle(`${serviceName}/${key}`);
  const service = await get(`/services/${encodeURIComponent(serviceName)}`);
  if (ctx.signal.aborted) return;
  if (service.ty === 'Service') {
    fill(ctx.main, h('h1', null, serviceName), message('error', `${serviceName} is a plain service: it has no keys.`));
    return;
  }
  const notice = h('div', { id: 'notice' });
  const stateBox = h('div', { id: 'state' });
  const others = h('div');
  fill(
    ctx.main,
    h('h1', null, pageLink(serviceName, 'services', serviceName), ' / ', h('span', { class: 'mono' }, key)),
    notice,
    section('State', stateBox),
    others,
  );

  let editing = false;

  async function loadState() {
    const rows = await query(
      `SELECT key, value FROM state WHERE service_name = ${lit(serviceName)} AND service_key = ${lit(key)} ORDER BY key`,
    );
    return rows.map((row) => ({ name: row.key, value: hexToBytes(row.value ?? '') }));
  }

  async function refresh(force = false) {
    if (editing && !force) return;
    const [state, holders, inbox, invocations, promises] = await Promise.all([
      loadState(),
      query(`SELECT invocation_id FROM sys_keyed_service_status WHERE service_name = ${lit(serviceName)} AND service_key = ${lit(key)}`),
      query(
        `SELECT i.id, i.sequence_number, v.target_handler_name AS handler, v.created_at FROM sys_inbox i LEFT JOIN sys_invocation v ON v.id = i.id ` +
          `WHERE i.service_name = ${lit(serviceName)} AND i.service_key = ${lit(key)} ORDER BY i.sequence_number`,
      ),
      query(
        `SELECT id, target_handler_name AS handler, status, created_at FROM sys_invocation ` +
          `WHERE target_service_name = ${lit(serviceName)} AND target_service_key = ${lit(key)} ORDER BY created_at DESC LIMIT ${RECENT_INVOCATIONS}`,
      ),
      service.ty === 'Workflow'
        ? query(
            `SELECT key, completed, completion_success_value, completion_failure FROM sys_promise ` +
              `WHERE service_name = ${lit(serviceName)} AND service_key = ${lit(key)} ORDER BY key`,
          )
        : Promise.resolve(null),
    ]);
    if (ctx.signal.aborted || (editing && !force)) return;
    showState(state);
    fill(
      others,
      section(
        'Lock and inbox',
        facts([['Held by', holders.length ? pageLink(holders[0].invocation_id, 'invocations', holders[0].invocation_id) : 'nobody (the key is free)']]),
        inbox.length
          ? table(
              ['#', 'Queued invocation', 'Handler', 'Created'],
              inbox.map((row) => [String(row.sequence_number), pageLink(row.id, 'invocations', row.id), row.handler ?? '', relative(row.created_at)]),
              { id: 'inbox' },
            )
          : h('p', { class: 'muted' }, 'The inbox is empty.'),
      ),
      promises ? promisesSection(serviceName, key, promises, null, notice, () => refresh(true)) : null,
      section(
        'Invocations',
        invocations.length
          ? table(
              ['Invocation', 'Handler', 'Status', 'Created'],
              invocations.map((row) => [pageLink(row.id, 'invocations', row.id), row.handler, badge(row.status), relative(row.created_at)]),
            )
          : h('p', { class: 'muted' }, 'None retained.'),
        h('a', { href: `/ui/invocations?service=${encodeURIComponent(serviceName)}&key=${encodeURIComponent(key)}` }, 'All invocations of this key'),
      ),
    );
  }

  function showState(state) {
    const rows = state.map(({ name, value }) => {
      const read = readValue(value);
      return h(
        'tr',
        { dataset: { name } },
        h('td', { class: 'mono' }, name),
        h('td', null, h('pre', { class: 'value' }, read.kind === 'binary' ? `(binary) ${read.text}` : read.text)),
      );
    });
    fill(
      stateBox,
      state.length ? table(['Name', 'Value'], rows, { id: 'state-table' }) : h('p', { class: 'muted' }, 'No state.'),
      h('button', { type: 'button', id: 'edit-state', onclick: () => startEditing(state) }, 'Edit state'),
    );
  }

  function startEditing(state) {
    editing = true;
    const originals = new Map(); // editor row -> the entry it shows, so an untouched value is written back byte for byte
    const list = h('div', { class: 'editor', id: 'state-editor' });
    const addRow = (name, text, original) => {
      const row = h(
        'div',
        { class: 'editor-row' },
        h('input', { name: 'name', value: name, placeholder: 'name', 'aria-label': 'State name', required: true }),
        h('textarea', { name: 'value', rows: Math.min(12, Math.max(2, text.split('\n').length)), 'aria-label': `Value of ${name || 'new entry'}` }, text),
        h('button', { type: 'button', class: 'secondary', onclick: () => row.remove() }, 'Remove'),
      );
      if (original) originals.set(row, { ...original, shown: text });
      list.append(row);
    };
    for (const entry of state) {
      const read = readValue(entry.value);
      addRow(entry.name, read.kind === 'binary' ? '' : read.text, entry);
    }
    const asJson = h('input', { type: 'checkbox', checked: true, id: 'values-json' });
    fill(
      stateBox,
      list,
      h('p', null, h('button', { type: 'button', class: 'secondary', onclick: () => addRow('', '') }, 'Add entry')),
      h('label', null, asJson, ' Values must be JSON (the SDKs’ default serde)'),
      h(
        'div',
        { class: 'toolbar' },
        h('button', { type: 'button', class: 'primary', id: 'save-state', onclick: () => save(state, list, originals, asJson.checked) }, 'Save…'),
        h(
          'button',
          {
            type: 'button',
            class: 'secondary',
            onclick: () => {
              editing = false;
              refresh(true);
            },
          },
          'Discard',
        ),
      ),
    );
  }

  async function save(original, list, originals, mustBeJson) {
    const edited = [];
    for (const row of list.querySelectorAll('.editor-row')) {
      const name = row.querySelector('input').value;
      const text = row.querySelector('textarea').value;
      if (!name) {
        fill(notice, message('error', 'Every entry needs a name.'));
        return;
      }
      const shown = originals.get(row);
      if (shown && shown.name === name && shown.shown === text) {
        edited.push({ name, value: shown.value, unchanged: true });
        continue;
      }
      if (mustBeJson) {
        try {
          JSON.parse(text);
        } catch (error) {
          fill(notice, message('error', `The value of “${name}” is not JSON: ${error.message}`));
          return;
        }
      }
      edited.push({ name, value: encodeText(text) });
    }
    const names = new Set(edited.map((e) => e.name));
    if (names.size !== edited.length) {
      fill(notice, message('error', 'Two entries have the same name.'));
      return;
    }
    const before = new Set(original.map((e) => e.name));
    const changes = [
      ...edited.filter((e) => !before.has(e.name)).map((e) => `add “${e.name}”`),
      ...edited.filter((e) => before.has(e.name) && !e.unchanged).map((e) => `change “${e.name}”`),
      ...original.filter((e) => !names.has(e.name)).map((e) => `remove “${e.name}”`),
    ];
    if (!changes.length) {
      fill(notice, message('info', 'Nothing changed.'));
      return;
    }
    const ok = await confirmAction({
      title: `Replace the state of ${serviceName}/${key}?`,
      body: [
        h('ul', null, changes.map((c) => h('li', null, c))),
        h('p', null, 'Only if nobody changed the state since this page loaded it; otherwise nothing is written.'),
      ],
      confirmLabel: 'Replace state',
      danger: true,
    });
    if (!ok) return;
    const version = await stateVersion(original.map((e) => [encodeText(e.name), e.value]));
    const newState = Object.fromEntries(edited.map((e) => [e.name, Array.from(e.value)]));
    try {
      const answer = await send('POST', `/services/${encodeURIComponent(serviceName)}/state`, { object_key: key, new_state: newState, version });
      fill(
        notice,
        answer.status === 202
          ? message('success', 'State change accepted: it is applied once no invocation holds the key, if the state is still the one edited.')
          : message('success', 'State replaced.'),
      );
      editing = false;
    } catch (error) {
      fill(
        notice,
        error.status === 409
          ? message('error', `Not saved: the state changed since it was loaded (${error.message}). Discard, look at the new state and edit again.`)
          : message('error', `Not saved: ${error.status} ${error.message}`),
      );
      return;
    }
    await refresh(true);
  }

  await refresh(true);
  ctx.every(REFRESH_MS, () => (dialogOpen() ? undefined : refresh()));
}
