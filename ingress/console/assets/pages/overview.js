// Overview (`/ui`): invocation counts by status, throughput and latency of the
// last minutes, services and their types, deployments and which are draining.

import { h, fill, section, table, pageLink, badge, message } from '../dom.js';
import { get, query } from '../api.js';
import { lineChart } from '../chart.js';
import { STATUSES, deploymentStatus } from '../model.js';
import { sample, series, SAMPLE_INTERVAL_MS, WINDOW_MS } from '../metrics.js';
import { relative } from '../format.js';

const REFRESH_MS = 3000;
const MIN_WINDOW_MS = 60 * 1000;

export async function render(ctx) {
  ctx.setTitle('Overview');
  const counts = h('div', { class: 'counts' });
  const charts = h('div', { class: 'charts' }, h('p', { class: 'muted' }, 'Sampling metrics…'));
  const servicesBox = h('div');
  const deploymentsBox = h('div');
  fill(
    ctx.main,
    h('h1', null, 'Overview'),
    section('Invocations by status', counts),
    section('Throughput and latency', charts),
    section('Services', servicesBox),
    section('Deployments', deploymentsBox),
  );

  async function refresh() {
    const [byStatus, pinned, serviceList, deploymentList] = await Promise.all([
      query('SELECT status, COUNT(*) AS n FROM sys_invocation GROUP BY status'),
      query(
        "SELECT pinned_deployment_id AS deployment, COUNT(*) AS n FROM sys_invocation WHERE status != 'completed' AND pinned_deployment_id IS NOT NULL GROUP BY pinned_deployment_id",
      ),
      get('/services'),
      get('/deployments'),
    ]);
    if (ctx.signal.aborted) return;
    renderCounts(counts, byStatus);
    renderServices(servicesBox, serviceList.services);
    renderDeployments(deploymentsBox, deploymentList.deployments, serviceList.services, pinned);
  }

  async function chart() {
    const snapshots = await sample();
    const points = series(snapshots);
    if (ctx.signal.aborted) return;
    const now = Date.now();
    // the x axis spans what was sampled: at least a minute, at most the kept window
    const sampledMs = snapshots.length ? now - snapshots[0].at : 0;
    const windowMs = Math.min(WINDOW_MS, Math.max(MIN_WINDOW_MS, sampledMs));
    const common = { nowMs: now, windowMs, maxGapMs: 3 * SAMPLE_INTERVAL_MS };
    fill(
      charts,
      lineChart({
        ...common,
        title: 'Completed invocations per second',
        lines: [{ name: 'completed/s', className: 'series-a', points: points.map((p) => ({ at: p.at, value: p.perSecond })) }],
      }),
      lineChart({
        ...common,
        title: 'Attempt duration',
        unit: 'ms (bucket bound)',
        lines: [
          { name: 'p50', className: 'series-a', points: points.map((p) => ({ at: p.at, value: p.p50Ms })) },
          { name: 'p95', className: 'series-b', points: points.map((p) => ({ at: p.at, value: p.p95Ms })) },
        ],
      }),
    );
  }

  await refresh();
  chart().catch((error) => fill(charts, message('error', `metrics: ${error.message}`)));
  ctx.every(REFRESH_MS, refresh);
  ctx.every(SAMPLE_INTERVAL_MS, chart);
}

function renderCounts(box, rows) {
  const byStatus = Object.fromEntries(rows.map((row) => [row.status, row.n]));
  const known = [...STATUSES, ...Object.keys(byStatus).filter((s) => !STATUSES.includes(s))];
  fill(
    box,
    known.map((status) =>
      h(
        'a',
        { class: 'count', href: '/ui/invocations?status=' + encodeURIComponent(status), dataset: { status } },
        h('span', { class: 'number' }, String(byStatus[status] ?? 0)),
        badge(status),
      ),
    ),
  );
}

function renderServices(box, services) {
  if (!services.length) {
    fill(box, message('info', 'No services yet: register a deployment on the ', pageLink('Deployments', 'deployments'), ' page.'));
    return;
  }
  fill(
    box,
    table(
      ['Service', 'Type', 'Handlers', 'Revision', 'Deployment'],
      [...services]
        .sort((a, b) => a.name.localeCompare(b.name))
        .map((s) => [pageLink(s.name, 'services', s.name), s.ty, String(s.handlers.length), String(s.revision), pageLink(s.deployment_id, 'deployments', s.deployment_id)]),
    ),
  );
}

function renderDeployments(box, deployments, services, pinned) {
  if (!deployments.length) {
    fill(box, message('info', 'No deployments registered.'));
    return;
  }
  const latest = Object.fromEntries(services.map((s) => [s.name, s.deployment_id]));
  const active = Object.fromEntries(pinned.map((row) => [row.deployment, row.n]));
  fill(
    box,
    table(
      ['Deployment', 'Endpoint', 'Status', 'Running invocations', 'Created'],
      deployments.map((d) => [
        pageLink(d.id, 'deployments', d.id),
        d.uri,
        badge(deploymentStatus(d, latest, active[d.id] ?? 0)),
        String(active[d.id] ?? 0),
        relative(d.created_at),
      ]),
    ),
  );
}
