// Deployments (`/ui/deployments`): each deployment with its status (Active,
// Draining, Drained, as `restate deployments list` says), and registering one by URL.

import { h, fill, section, table, pageLink, badge, message } from '../dom.js';
import { get, send, query } from '../api.js';
import { deploymentStatus } from '../model.js';
import { relative } from '../format.js';

export async function render(ctx) {
  ctx.setTitle('Deployments');
  const notice = h('div', { id: 'notice' });
  const list = h('div');
  const uri = h('input', { name: 'uri', type: 'url', required: true, placeholder: 'http://127.0.0.1:9080', size: 40 });
  const http11 = h('input', { type: 'checkbox', name: 'use_http_11' });
  const force = h('input', { type: 'checkbox', name: 'force' });
  const form = h(
    'form',
    { class: 'inline', id: 'register' },
    h('label', null, 'Endpoint URL ', uri),
    h('label', null, http11, ' HTTP/1.1 (request/response)'),
    h('label', null, force, ' replace changed services'),
    h('button', { type: 'submit', class: 'primary' }, 'Register'),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    fill(notice, message('info', `Discovering ${uri.value}…`));
    try {
      const answer = await send('POST', '/deployments', { uri: uri.value, use_http_11: http11.checked, force: force.checked });
      const d = answer.body;
      fill(
        notice,
        message(
          'success',
          `${answer.status === 201 ? 'Registered' : 'Already registered:'} `,
          pageLink(d.id, 'deployments', d.id),
          ` with ${d.services.map((s) => s.name).join(', ')}.`,
        ),
      );
      await refresh();
    } catch (error) {
      fill(notice, message('error', `Not registered: ${error.status} ${error.message}`));
    }
  });
  fill(ctx.main, h('h1', null, 'Deployments'), section('Register a deployment', form), notice, list);

  async function refresh() {
    const [{ deployments }, { services }, pinned] = await Promise.all([
      get('/deployments'),
      get('/services'),
      query(
        "SELECT pinned_deployment_id AS deployment, COUNT(*) AS n FROM sys_invocation WHERE status != 'completed' AND pinned_deployment_id IS NOT NULL GROUP BY pinned_deployment_id",
      ),
    ]);
    if (ctx.signal.aborted) return;
    const latest = Object.fromEntries(services.map((s) => [s.name, s.deployment_id]));
    const active = Object.fromEntries(pinned.map((row) => [row.deployment, row.n]));
    fill(
      list,
      deployments.length
        ? section(
            `${deployments.length} deployments`,
            table(
              ['Deployment', 'Endpoint', 'Status', 'Running invocations', 'Services', 'Protocol', 'Created'],
              deployments.map((d) => [
                pageLink(d.id, 'deployments', d.id),
                d.uri,
                badge(deploymentStatus(d, latest, active[d.id] ?? 0)),
                String(active[d.id] ?? 0),
                d.services.map((s) => `${s.name} (rev ${s.revision})`).join(', '),
                `${d.protocol_type}, ${d.http_version}, v${d.min_protocol_version}–${d.max_protocol_version}`,
                relative(d.created_at),
              ]),
              { id: 'deployments' },
            ),
          )
        : message('info', 'No deployments registered.'),
    );
  }

  await refresh();
  ctx.every(5000, refresh);
}
