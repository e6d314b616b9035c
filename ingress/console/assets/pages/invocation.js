// One invocation (`/ui/invocations/{id}`): status and target, the journal as a
// timeline with each entry's data, attempts and the retry schedule, what it
// waits for (a workflow's promises can be resolved here), parent and children,
// the output once done, and the lifecycle commands.

import { h, fill, section, table, facts, pageLink, badge, message } from '../dom.js';
import { get, query, lit } from '../api.js';
import { runCommand } from '../actions.js';
import { ACTIONS, actionsFor, retrySchedule } from '../model.js';
import { duration, readValue, relative, time } from '../format.js';
import { timeline } from '../journal.js';
import { target } from './invocations.js';
import { promisesSection } from './promises.js';

const REFRESH_MS = 2000;

export async function render(ctx) {
  const [invocationId] = ctx.params;
  ctx.setTitle(invocationId);
  const notice = h('div', { id: 'notice' });
  const body = h('div');
  fill(ctx.main, h('h1', null, 'Invocation ', h('span', { class: 'mono' }, invocationId)), notice, body);

  let lastModified = null;
  async function refresh(force = false) {
    const id = lit(invocationId);
    const [rows, journal, children] = await Promise.all([
      query(`SELECT * FROM sys_invocation WHERE id = ${id}`),
      query(`SELECT index, entry_type, name, entry_json, appended_at, raw_length FROM sys_journal WHERE id = ${id} ORDER BY index`),
      query(`SELECT id, target, target_service_name, target_service_key, status, created_at FROM sys_invocation WHERE invoked_by_id = ${id} ORDER BY created_at`),
    ]);
    if (ctx.signal.aborted) return;
    const row = rows[0];
    if (!row) {
      fill(body, message('error', `No invocation ${invocationId} (it never existed, or it was purged after its retention).`));
      return;
    }
    const version = `${row.modified_at}|${journal.length}|${children.map((c) => c.status).join()}`;
    if (!force && version === lastModified) return;
    lastModified = version;
    const service = await get(`/services/${encodeURIComponent(row.target_service_name)}`).catch(() => null);
    const promises = await promisesOf(row);
    if (ctx.signal.aborted) return;
    const items = timeline(journal);
    fill(
      body,
      summarySection(row),
      actionBar(row, notice, () => refresh(true)),
      row.status === 'completed' ? outcomeSection(row, items) : null,
      attemptsSection(row, service),
      promises ? promisesSection(row.target_service_name, row.target_service_key, promises, items, notice, () => refresh(true)) : null,
      journalSection(items, row),
      familySection(row, children),
    );
  }

  await refresh(true);
  ctx.every(REFRESH_MS, () => refresh());
}

async function promisesOf(row) {
  if (row.target_service_ty !== 'workflow') return null;
  return query(
    `SELECT key, completed, completion_success_value, completion_failure FROM sys_promise ` +
      `WHERE service_name = ${lit(row.target_service_name)} AND service_key = ${lit(row.target_service_key)} ORDER BY key`,
  );
}

function summarySection(row) {
  const parent = row.invoked_by_id
    ? pageLink(row.invoked_by_id, 'invocations', row.invoked_by_id)
    : row.invoked_by === 'subscription'
      ? `subscription ${row.invoked_by_subscription_id}`
      : row.invoked_by;
  return section(
    'Status',
    facts([
      ['Status', h('span', { id: 'status' }, badge(row.status))],
      ['Target', target(row)],
      ['Type', row.target_service_ty],
      ['Created', `${time(row.created_at)} (${relative(row.created_at)})`],
      ['Scheduled to start', row.scheduled_start_at ? time(row.scheduled_start_at) : null],
      ['Queued in inbox since', row.inboxed_at && row.status === 'pending' ? time(row.inboxed_at) : null],
      ['Running since', row.running_at && row.status !== 'completed' ? time(row.running_at) : null],
      ['Completed', row.completed_at ? time(row.completed_at) : null],
      ['Modified', relative(row.modified_at)],
      ['Invoked by', parent],
      ['Idempotency key', row.idempotency_key],
      ['Restarted from', row.restarted_from ? pageLink(row.restarted_from, 'invocations', row.restarted_from) : null],
      ['Deployment', row.pinned_deployment_id ? pageLink(row.pinned_deployment_id, 'deployments', row.pinned_deployment_id) : null],
      ['Protocol version', row.pinned_service_protocol_version],
      ['Journal', `${row.journal_size ?? 0} entries (${row.journal_commands_size ?? 0} commands)`],
      ['Waiting for', waitingFor(row)],
      ['Trace id', row.trace_id],
    ]),
  );
}

/** What a suspended invocation waits for: completions (of its commands) and signals (awakeables, cancellation). */
function waitingFor(row) {
  const completions = row.suspended_waiting_for_completions || [];
  const signals = row.suspended_waiting_for_signals || [];
  const parts = [];
  if (completions.length) parts.push(`completion${completions.length > 1 ? 's' : ''} ${completions.join(', ')}`);
  if (signals.length) parts.push(`signal${signals.length > 1 ? 's' : ''} ${signals.join(', ')} (awakeables; 1 is cancellation)`);
  return parts.length ? parts.join('; ') : null;
}

function actionBar(row, notice, refresh) {
  return h(
    'div',
    { class: 'toolbar actions' },
    actionsFor(row.status).map((command) =>
      h(
        'button',
        {
          type: 'button',
          class: ACTIONS[command].danger ? 'danger' : 'secondary',
          dataset: { command },
          onclick: async () => {
            const outcome = await runCommand(command, [row.id], `${row.target} (${row.status}).`);
            if (outcome) {
              fill(notice, outcome);
              await refresh();
            }
          },
        },
        ACTIONS[command].label,
      ),
    ),
  );
}

function outcomeSection(row, items) {
  const output = items.find((item) => item.kind === 'command' && item.type === 'Output');
  if (row.completion_result === 'failure' || row.completion_failure) {
    return section('Outcome', message('error', `Failed: ${row.completion_failure ?? 'unknown failure'}`));
  }
  const result = output && output.entry ? output.entry.Command.Output.result : null;
  const shown = result && 'Success' in result ? readValue(result.Success).text : null;
  return section(
    'Outcome',
    message('success', 'Succeeded.'),
    shown !== null
      ? h('pre', { class: 'value', id: 'output' }, shown === '' ? '(empty)' : shown)
      : h('p', { class: 'muted' }, 'The output is not shown: the journal is no longer kept (journal retention).'),
  );
}

function attemptsSection(row, service) {
  const policy = service ? service.retry_policy : null;
  // retry_count is Restate's: attempts since the last journal progress, the running one included.
  const attempts = row.retry_count === undefined || row.retry_count === null ? null : Number(row.retry_count);
  const running = row.status === 'running';
  const firstFailure = attempts === null ? 1 : running ? attempts : attempts + 1;
  const schedule = row.status === 'completed' ? null : retrySchedule(policy, firstFailure);
  const failure = row.last_failure
    ? h(
        'div',
        { class: 'failure-box', id: 'last-failure' },
        h('strong', null, `Last failure${row.last_failure_error_code ? ` (${row.last_failure_error_code})` : ''}: `),
        row.last_failure,
        row.last_failure_related_command_name || row.last_failure_related_command_type
          ? h('div', { class: 'muted' }, `at command ${row.last_failure_related_command_index ?? ''} ${row.last_failure_related_command_type ?? ''} ${row.last_failure_related_command_name ?? ''}`)
          : null,
      )
    : null;
  const waits = schedule ? [...schedule.delays.map(duration), schedule.then ? `then ${String(schedule.then).toLowerCase()}` : '…'].join(', ') : null;
  return section(
    'Attempts',
    facts([
      ['Attempts since the last progress', attempts === null ? null : String(attempts)],
      ['Last attempt started', row.last_start_at ? `${time(row.last_start_at)} (${relative(row.last_start_at)})` : null],
      ['Last attempt deployment', row.last_attempt_deployment_id],
      ['Next attempt', row.next_retry_at ? `${time(row.next_retry_at)} (${relative(row.next_retry_at)})` : null],
      [
        'Retry policy',
        policy
          ? `from ${policy.initial_interval}, ×${policy.exponentiation_factor}, up to ${policy.max_interval}; ${policy.max_attempts ? `at most ${policy.max_attempts} attempts, then ${policy.on_max_attempts}` : 'no attempt limit'}`
          : null,
      ],
      [running ? 'If this attempt fails, then waits' : 'If the next attempt fails, then waits', waits],
    ]),
    failure,
  );
}

function journalSection(items, row) {
  if (!items.length) {
    const why = row.status === 'completed' ? 'The journal is no longer kept (journal retention) or was purged.' : 'No entries yet.';
    return section('Journal', h('p', { class: 'muted' }, why));
  }
  return section(
    'Journal',
    h(
      'ol',
      { class: 'timeline', id: 'journal' },
      items.map((item) =>
        h(
          'li',
          { class: `entry entry-${item.kind}${item.waiting ? ' waiting' : ''}`, dataset: { index: String(item.index), type: item.type } },
          h(
            'div',
            { class: 'entry-head' },
            h('span', { class: 'entry-index' }, String(item.index)),
            h('span', { class: 'entry-kind' }, item.kind === 'command' ? 'Command' : 'Notification'),
            h('span', { class: 'entry-type' }, item.type),
            item.name ? h('span', { class: 'entry-name' }, item.name) : null,
            item.waiting ? h('span', { class: 'badge badge-waiting' }, 'waiting') : null,
            h('span', { class: 'entry-summary' }, item.summary),
            item.calledId ? pageLink(item.calledId, 'invocations', item.calledId) : null,
            h('span', { class: 'entry-time muted' }, item.appendedAt ? time(item.appendedAt) : ''),
          ),
          item.data ? h('details', null, h('summary', null, 'data'), h('pre', { class: 'value' }, JSON.stringify(item.data, null, 2))) : null,
        ),
      ),
    ),
  );
}

function familySection(row, children) {
  return section(
    'Parent and children',
    facts([['Parent', row.invoked_by_id ? pageLink(row.invoked_by_id, 'invocations', row.invoked_by_id) : `none (invoked by ${row.invoked_by})`]]),
    children.length
      ? table(
          ['Child', 'Target', 'Status', 'Created'],
          children.map((c) => [pageLink(c.id, 'invocations', c.id), target(c), badge(c.status), relative(c.created_at)]),
        )
      : h('p', { class: 'muted' }, 'It called or sent to no other invocation.'),
  );
}

