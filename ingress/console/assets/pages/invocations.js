// Invocations (`/ui/invocations?service=&handler=&key=&status=&deployment=&older=&newer=&page=`):
// a filtered, paged table of `sys_invocation`, refreshed live, with commands on
// the selected invocations or on everything the filter matches.

import { h, fill, table, pageLink, badge, message } from '../dom.js';
import { get, query, lit } from '../api.js';
import { runCommand } from '../actions.js';
import { ACTIONS, STATUSES, invocationFilterSql } from '../model.js';
import { parseDuration, relative, truncate } from '../format.js';

const PAGE_SIZE = 25;
const REFRESH_MS = 2000;
/** The most invocations one command on "everything the filter matches" touches; narrow the filter beyond that. */
export const MAX_BULK_INVOCATIONS = 1000;

const FILTER_FIELDS = ['service', 'handler', 'key', 'status', 'deployment', 'older', 'newer'];

function filterFrom(params) {
  const filter = Object.fromEntries(FILTER_FIELDS.map((name) => [name, params.get(name) || '']));
  filter.olderMs = filter.older ? parseDuration(filter.older) : null;
  filter.newerMs = filter.newer ? parseDuration(filter.newer) : null;
  return filter;
}

function describeFilter(filter) {
  const parts = FILTER_FIELDS.filter((name) => filter[name]).map((name) => `${name} = ${filter[name]}`);
  return parts.length ? `Filter: ${parts.join(', ')}.` : 'No filter: every invocation.';
}

export async function render(ctx) {
  ctx.setTitle('Invocations');
  const filter = filterFrom(ctx.query);
  const page = Math.max(1, Number(ctx.query.get('page')) || 1);
  const [serviceList, deploymentList] = await Promise.all([get('/services'), get('/deployments')]);
  if (ctx.signal.aborted) return;

  const problems = ['older', 'newer'].filter((name) => filter[name] && filter[name + 'Ms'] === null);
  const selected = new Set();
  const results = h('div', { class: 'results' });
  const summary = h('p', { class: 'muted', id: 'summary' });
  const notice = h('div', { id: 'notice' });
  const live = h('input', { type: 'checkbox', checked: true, id: 'live' });

  const form = filterForm(filter, serviceList.services, deploymentList.deployments, (values) => {
    const params = new URLSearchParams(Object.entries(values).filter(([, v]) => v));
    ctx.navigate('/ui/invocations' + (params.toString() ? '?' + params : ''), { replace: true });
  });
  const command = h('select', { name: 'command', 'aria-label': 'Command' }, Object.entries(ACTIONS).map(([name, a]) => h('option', { value: name }, a.label)));
  const onSelected = h('button', { type: 'button', id: 'apply-selected' }, 'Apply to selected');
  const onAll = h('button', { type: 'button', id: 'apply-all', class: 'secondary' }, 'Apply to all matching');
  fill(
    ctx.main,
    h('h1', null, 'Invocations'),
    form,
    problems.length ? message('error', `Not a duration: ${problems.map((p) => filter[p]).join(', ')} (write 30s, 5m, 2h or 1d).`) : null,
    h(
      'div',
      { class: 'toolbar' },
      h('label', null, live, ' Live'),
      h('span', { class: 'spacer' }),
      command,
      onSelected,
      onAll,
    ),
    notice,
    summary,
    results,
  );

  const where = invocationFilterSql(filter, lit, Date.now());
  onSelected.addEventListener('click', async () => {
    if (!selected.size) {
      fill(notice, message('error', 'Select invocations first (the boxes in the first column).'));
      return;
    }
    const outcome = await runCommand(command.value, [...selected], `${selected.size} selected on this page.`);
    if (outcome) {
      fill(notice, outcome);
      selected.clear();
      await refresh();
    }
  });
  onAll.addEventListener('click', async () => {
    const rows = await query(
      `SELECT id FROM sys_invocation ${invocationFilterSql(filter, lit, Date.now())} ORDER BY created_at DESC LIMIT ${MAX_BULK_INVOCATIONS + 1}`,
    );
    if (rows.length > MAX_BULK_INVOCATIONS) {
      fill(notice, message('error', `More than ${MAX_BULK_INVOCATIONS} invocations match: narrow the filter.`));
      return;
    }
    if (!rows.length) {
      fill(notice, message('error', 'No invocation matches the filter.'));
      return;
    }
    const outcome = await runCommand(command.value, rows.map((r) => r.id), describeFilter(filter));
    if (outcome) {
      fill(notice, outcome);
      selected.clear();
      await refresh();
    }
  });

  async function refresh() {
    const offset = (page - 1) * PAGE_SIZE;
    const [rows, [{ n: total }]] = await Promise.all([
      query(
        `SELECT id, target, target_service_name, target_service_key, target_service_ty, status, created_at, modified_at, ` +
          `pinned_deployment_id, retry_count, last_failure, completion_failure, invoked_by_id ` +
          `FROM sys_invocation ${where} ORDER BY created_at DESC, id LIMIT ${PAGE_SIZE} OFFSET ${offset}`,
      ),
      query(`SELECT COUNT(*) AS n FROM sys_invocation ${where}`),
    ]);
    if (ctx.signal.aborted) return;
    fill(summary, total ? `Showing ${offset + 1}–${offset + rows.length} of ${total}.` : 'No invocation matches.');
    fill(results, invocationTable(rows, selected), pager(ctx, page, total));
  }

  await refresh();
  ctx.every(REFRESH_MS, async () => {
    if (live.checked) await refresh();
  });
}

function filterForm(filter, services, deployments, submit) {
  const field = (label, control) => h('label', null, h('span', null, label), control);
  const serviceSelect = h(
    'select',
    { name: 'service' },
    h('option', { value: '' }, 'any'),
    [...services].sort((a, b) => a.name.localeCompare(b.name)).map((s) => h('option', { value: s.name, selected: s.name === filter.service }, s.name)),
  );
  const handlerSelect = h('select', { name: 'handler' });
  const fillHandlers = () => {
    const service = services.find((s) => s.name === serviceSelect.value);
    const names = service ? service.handlers.map((x) => x.name) : [...new Set(services.flatMap((s) => s.handlers.map((x) => x.name)))];
    fill(handlerSelect, h('option', { value: '' }, 'any'), names.sort().map((name) => h('option', { value: name, selected: name === filter.handler }, name)));
  };
  fillHandlers();
  serviceSelect.addEventListener('change', fillHandlers);
  const statusSelect = h(
    'select',
    { name: 'status' },
    h('option', { value: '' }, 'any'),
    STATUSES.map((s) => h('option', { value: s, selected: s === filter.status }, s)),
  );
  const deploymentSelect = h(
    'select',
    { name: 'deployment' },
    h('option', { value: '' }, 'any'),
    deployments.map((d) => h('option', { value: d.id, selected: d.id === filter.deployment }, `${d.id} (${d.uri})`)),
  );
  const key = h('input', { name: 'key', value: filter.key, placeholder: 'object or workflow key' });
  const older = h('input', { name: 'older', value: filter.older, placeholder: 'e.g. 10m', size: 6 });
  const newer = h('input', { name: 'newer', value: filter.newer, placeholder: 'e.g. 1h', size: 6 });
  const form = h(
    'form',
    { class: 'filters', id: 'filters' },
    field('Service', serviceSelect),
    field('Handler', handlerSelect),
    field('Key', key),
    field('Status', statusSelect),
    field('Deployment', deploymentSelect),
    field('Created more than … ago', older),
    field('Created within the last …', newer),
    h('div', { class: 'buttons' }, h('button', { type: 'submit' }, 'Filter'), h('a', { href: '/ui/invocations', class: 'button secondary' }, 'Clear')),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    submit(Object.fromEntries(new FormData(form).entries()));
  });
  return form;
}

function invocationTable(rows, selected) {
  const header = h('input', { type: 'checkbox', 'aria-label': 'Select all on this page' });
  const boxes = [];
  const body = rows.map((row) => {
    const box = h('input', { type: 'checkbox', checked: selected.has(row.id), 'aria-label': `Select ${row.id}`, dataset: { id: row.id } });
    box.addEventListener('change', () => (box.checked ? selected.add(row.id) : selected.delete(row.id)));
    boxes.push(box);
    const failure = row.completion_failure || row.last_failure;
    return h(
      'tr',
      { dataset: { id: row.id } },
      h('td', null, box),
      h('td', { class: 'mono' }, pageLink(row.id, 'invocations', row.id)),
      h('td', null, target(row)),
      h('td', null, badge(row.status)),
      h('td', { title: row.created_at }, relative(row.created_at)),
      h('td', { title: row.modified_at }, relative(row.modified_at)),
      h('td', { class: 'mono' }, row.pinned_deployment_id ? pageLink(row.pinned_deployment_id, 'deployments', row.pinned_deployment_id) : ''),
      h('td', null, row.retry_count ? String(row.retry_count) : ''),
      h('td', { class: 'failure' }, failure ? truncate(failure, 100) : ''),
    );
  });
  header.addEventListener('change', () => {
    for (const box of boxes) {
      box.checked = header.checked;
      header.checked ? selected.add(box.dataset.id) : selected.delete(box.dataset.id);
    }
  });
  const columns = ['', 'Invocation', 'Target', 'Status', 'Created', 'Modified', 'Deployment', 'Retries', 'Failure'];
  const element = table(columns, body, { class: 'invocations', id: 'invocations' });
  element.querySelector('th').append(header);
  return element;
}

/** `Service/key/handler` with links to the service and the key's page. */
export function target(row) {
  const service = row.target_service_name;
  if (!service) return row.target;
  const handler = row.target.split('/').pop();
  const key = row.target_service_key;
  if (key === undefined || key === null) return h('span', null, pageLink(service, 'services', service), '/', handler);
  return h('span', null, pageLink(service, 'services', service), '/', pageLink(key, 'services', service, 'keys', key), '/', handler);
}

function pager(ctx, page, total) {
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const go = (n) => {
    const params = new URLSearchParams(location.search);
    params.set('page', String(n));
    return '/ui/invocations?' + params;
  };
  return h(
    'nav',
    { class: 'pager', 'aria-label': 'Pages' },
    page > 1 ? h('a', { href: go(page - 1), rel: 'prev' }, '← Newer') : h('span', { class: 'muted' }, '← Newer'),
    h('span', null, `Page ${page} of ${pages}`),
    page < pages ? h('a', { href: go(page + 1), rel: 'next' }, 'Older →') : h('span', { class: 'muted' }, 'Older →'),
  );
}
