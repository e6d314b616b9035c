// One service (`/ui/services/{name}`): its handlers and options, and for a
// virtual object or workflow the keys that have state or invocations.

import { h, fill, section, table, facts, pageLink, pagePath, message } from '../dom.js';
import { get, query, lit } from '../api.js';

const MAX_KEYS_SHOWN = 200;

export async function render(ctx) {
  const [name] = ctx.params;
  ctx.setTitle(name);
  const service = await get(`/services/${encodeURIComponent(name)}`);
  if (ctx.signal.aborted) return;
  const keyed = service.ty !== 'Service';
  const policy = service.retry_policy || {};
  fill(
    ctx.main,
    h('h1', null, service.name, ' ', h('span', { class: 'muted' }, service.ty)),
    section(
      'Service',
      facts([
        ['Deployment', pageLink(service.deployment_id, 'deployments', service.deployment_id)],
        ['Revision', String(service.revision)],
        ['Public', service.public ? 'yes' : 'no'],
        ['Idempotency retention', service.idempotency_retention],
        ['Workflow completion retention', service.workflow_completion_retention],
        ['Journal retention', service.journal_retention],
        ['Inactivity timeout', service.inactivity_timeout],
        ['Abort timeout', service.abort_timeout],
        [
          'Retry policy',
          `from ${policy.initial_interval}, ×${policy.exponentiation_factor}, up to ${policy.max_interval}; ` +
            (policy.max_attempts ? `at most ${policy.max_attempts} attempts, then ${policy.on_max_attempts}` : 'no attempt limit'),
        ],
        ['Invocations', h('a', { href: '/ui/invocations?service=' + encodeURIComponent(service.name) }, 'all invocations of this service')],
      ]),
    ),
    section(
      'Handlers',
      table(
        ['Handler', 'Kind', 'Input', 'Output', ''],
        service.handlers.map((handler) => [
          handler.name,
          handler.ty ?? '',
          handler.input_description ?? '',
          handler.output_description ?? '',
          h('a', { href: `/ui/invocations?service=${encodeURIComponent(service.name)}&handler=${encodeURIComponent(handler.name)}` }, 'invocations'),
        ]),
      ),
    ),
    keyed ? await keysSection(ctx, service.name) : null,
  );
}

async function keysSection(ctx, name) {
  const form = h(
    'form',
    { class: 'inline', id: 'open-key' },
    h('label', null, 'Key ', h('input', { name: 'key', required: true, placeholder: 'e.g. ada' })),
    h('button', { type: 'submit' }, 'Open'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    ctx.navigate(pagePath('services', name, 'keys', new FormData(form).get('key')));
  });
  const rows = await query(
    `SELECT service_key AS key FROM state WHERE service_name = ${lit(name)} ` +
      `UNION SELECT target_service_key AS key FROM sys_invocation WHERE target_service_name = ${lit(name)} AND target_service_key IS NOT NULL ` +
      `ORDER BY key LIMIT ${MAX_KEYS_SHOWN + 1}`,
  );
  const shown = rows.slice(0, MAX_KEYS_SHOWN);
  return section(
    'Keys',
    form,
    shown.length
      ? h('ul', { class: 'keys', id: 'keys' }, shown.map((row) => h('li', null, pageLink(row.key, 'services', name, 'keys', row.key))))
      : message('info', 'No key has state or an invocation yet.'),
    rows.length > MAX_KEYS_SHOWN ? h('p', { class: 'muted' }, `Only the first ${MAX_KEYS_SHOWN} keys are listed; open others by name.`) : null,
  );
}
