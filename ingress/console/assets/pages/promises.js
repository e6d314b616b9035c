// A workflow's durable promises (`sys_promise`), on the invocation and key
// pages, each pending one with Resolve and Reject (`POST /services/{s}/promises`).

import { h, fill, section, table, message } from '../dom.js';
import { send } from '../api.js';
import { confirmAction } from '../dialog.js';
import { encodeText, hexToBytes, readValue, truncate } from '../format.js';

/** `items` (the journal timeline, or null) marks the promises the invocation awaits. */
export function promisesSection(service, key, promises, items, notice, refresh) {
  const awaited = new Set((items || []).filter((i) => i.waiting && i.type === 'GetPromise').map((i) => i.promise));
  for (const name of awaited) {
    if (!promises.some((p) => p.key === name)) promises.push({ key: name, completed: false });
  }
  if (!promises.length) return section('Promises', h('p', { class: 'muted' }, 'No promise of this workflow was created or awaited yet.'));
  return section(
    'Promises',
    table(
      ['Promise', 'State', 'Value', ''],
      promises.map((p) =>
        h(
          'tr',
          { dataset: { promise: p.key } },
          h('td', { class: 'mono' }, p.key),
          h(
            'td',
            null,
            p.completed ? (p.completion_failure ? 'rejected' : 'resolved') : 'pending',
            awaited.has(p.key) ? h('span', { class: 'badge badge-waiting' }, 'awaited') : null,
          ),
          h('td', null, p.completion_failure ? truncate(p.completion_failure, 120) : p.completed ? truncate(readValue(hexToBytes(p.completion_success_value)).text, 120) : ''),
          h(
            'td',
            null,
            p.completed
              ? null
              : [
                  h('button', { type: 'button', class: 'primary', onclick: () => complete(service, key, p.key, 'resolve', notice, refresh) }, 'Resolve…'),
                  ' ',
                  h('button', { type: 'button', class: 'secondary', onclick: () => complete(service, key, p.key, 'reject', notice, refresh) }, 'Reject…'),
                ],
          ),
        ),
      ),
      { id: 'promises' },
    ),
  );
}

async function complete(service, key, promise, how, notice, refresh) {
  const value = h('textarea', { name: 'value', rows: 4, placeholder: '"a JSON value"' });
  const code = h('input', { name: 'code', type: 'number', min: 400, max: 599, value: '500', required: true });
  const reason = h('input', { name: 'message', required: true, placeholder: 'why' });
  const asJson = h('input', { type: 'checkbox', checked: true, name: 'json' });
  const fields =
    how === 'resolve'
      ? [h('label', { class: 'stacked' }, 'Value', value), h('label', null, asJson, ' must be JSON (the workflow reads it with its JSON serde)')]
      : [h('label', { class: 'stacked' }, 'Code', code), h('label', { class: 'stacked' }, 'Message', reason)];
  const ok = await confirmAction({
    title: `${how === 'resolve' ? 'Resolve' : 'Reject'} promise “${promise}”?`,
    body: h('p', null, `Completes the promise “${promise}” of ${service}/${key}; whoever awaits it continues with this ${how === 'resolve' ? 'value' : 'failure'}. A promise completes once.`),
    confirmLabel: how === 'resolve' ? 'Resolve' : 'Reject',
    danger: how === 'reject',
    fields,
  });
  if (!ok) return;
  const body = { object_key: key, promise };
  if (how === 'resolve') {
    if (asJson.checked) {
      try {
        JSON.parse(value.value);
      } catch (error) {
        fill(notice, message('error', `Not resolved: the value is not JSON (${error.message}).`));
        return;
      }
    }
    body.value = Array.from(encodeText(value.value));
  } else {
    body.failure = { code: Number(code.value), message: reason.value };
  }
  try {
    await send('POST', `/services/${encodeURIComponent(service)}/promises`, body);
    fill(notice, message('success', `Promise “${promise}” ${how === 'resolve' ? 'resolved' : 'rejected'}.`));
  } catch (error) {
    fill(notice, message('error', `Promise “${promise}” not completed: ${error.status} ${error.message}`));
  }
  await refresh();
}
