// One deployment (`/ui/deployments/{id}`): what it is, the services it serves,
// whether it is draining, and removing it.

import { h, fill, section, table, facts, pageLink, badge, message } from '../dom.js';
import { get, send, query, lit } from '../api.js';
import { confirmAction } from '../dialog.js';
import { deploymentStatus } from '../model.js';
import { time } from '../format.js';

export async function render(ctx) {
  const [id] = ctx.params;
  ctx.setTitle(id);
  const [d, { services }, [{ n: running }]] = await Promise.all([
    get(`/deployments/${encodeURIComponent(id)}`),
    get('/services'),
    query(`SELECT COUNT(*) AS n FROM sys_invocation WHERE pinned_deployment_id = ${lit(id)} AND status != 'completed'`),
  ]);
  if (ctx.signal.aborted) return;
  const latest = Object.fromEntries(services.map((s) => [s.name, s.deployment_id]));
  const status = deploymentStatus(d, latest, running);
  const notice = h('div', { id: 'notice' });
  const remove = h('button', { type: 'button', class: 'danger', id: 'remove' }, 'Remove…');
  remove.addEventListener('click', async () => {
    const force = h('input', { type: 'checkbox', name: 'force' });
    const ok = await confirmAction({
      title: `Remove deployment ${id}?`,
      body: [
        h('p', null, `duro forgets ${d.uri}. `, status === 'Drained' ? 'It is drained: no invocation runs on it.' : `It is ${status.toLowerCase()}: ${running} invocations still run on it and would fail.`),
        status === 'Active' ? h('p', null, 'It serves the latest revision of a service: register a newer deployment first, or force.') : null,
      ],
      fields: status === 'Drained' ? [] : [h('label', null, force, ' force (invocations pinned to it will fail)')],
      confirmLabel: 'Remove',
      danger: true,
    });
    if (!ok) return;
    try {
      await send('DELETE', `/deployments/${encodeURIComponent(id)}${force.checked ? '?force=true' : ''}`);
      fill(notice, message('success', `Deployment ${id} removed. `, pageLink('Back to deployments', 'deployments')));
      remove.disabled = true;
    } catch (error) {
      fill(notice, message('error', `Not removed: ${error.status} ${error.message}`));
    }
  });
  fill(
    ctx.main,
    h('h1', null, 'Deployment ', h('span', { class: 'mono' }, id)),
    notice,
    section(
      'Deployment',
      facts([
        ['Status', badge(status)],
        ['Endpoint', d.uri],
        ['Protocol', `${d.protocol_type} over ${d.http_version}, service protocol v${d.min_protocol_version}–${d.max_protocol_version}`],
        ['SDK', d.sdk_version],
        ['Created', time(d.created_at)],
        ['Running invocations', h('a', { href: '/ui/invocations?deployment=' + encodeURIComponent(id) }, `${running} not completed`)],
        ['Additional headers', d.additional_headers ? Object.keys(d.additional_headers).join(', ') : null],
      ]),
      h('div', { class: 'toolbar' }, remove),
    ),
    section(
      'Services',
      table(
        ['Service', 'Type', 'Revision', 'Latest', 'Handlers'],
        d.services.map((s) => [
          pageLink(s.name, 'services', s.name),
          s.ty,
          String(s.revision),
          latest[s.name] === id ? 'yes' : latest[s.name] ? pageLink(`no: ${latest[s.name]}`, 'deployments', latest[s.name]) : 'no',
          s.handlers.map((x) => x.name).join(', '),
        ]),
      ),
    ),
  );
}
