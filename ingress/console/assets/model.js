// What the pages know about duro's (and Restate's) data: status words, which
// action fits which status, how a deployment drains, how a retry policy spaces
// attempts. No DOM here.

import { parseFriendly } from './format.js';

/** `sys_invocation.status` words, in the order an invocation passes them. */
export const STATUSES = ['scheduled', 'pending', 'ready', 'running', 'backing-off', 'suspended', 'paused', 'completed'];

/** The admin API's invocation commands (`PATCH /invocations/{id}/{command}`) and what each does, for the confirmations. */
export const ACTIONS = {
  cancel: { label: 'Cancel', danger: true, explain: 'The handler gets the cancel signal (queued or scheduled ones end at once).' },
  kill: { label: 'Kill', danger: true, explain: 'Ends it now without asking the handler, and kills what it called.' },
  pause: { label: 'Pause', danger: false, explain: 'Stops the running attempt or the retry timer until it is resumed.' },
  resume: { label: 'Resume', danger: false, explain: 'Runs the next attempt now.' },
  purge: { label: 'Purge', danger: true, explain: 'Forgets a completed invocation: status, journal and output.' },
  'purge-journal': { label: 'Purge journal', danger: true, explain: 'Forgets the journal of a completed invocation, keeps its output.' },
  'restart-as-new': { label: 'Restart as new', danger: false, explain: 'Runs the completed invocation’s input again under a new id.' },
};

/** The commands that make sense for an invocation in `status` (the API decides; this only hides the pointless ones). */
export function actionsFor(status) {
  switch (status) {
    case 'completed':
      return ['purge', 'purge-journal', 'restart-as-new'];
    case 'paused':
      return ['resume', 'cancel', 'kill'];
    case 'suspended':
    case 'backing-off':
      return ['resume', 'pause', 'cancel', 'kill'];
    case 'running':
    case 'ready':
      return ['pause', 'cancel', 'kill'];
    default:
      return ['cancel', 'kill'];
  }
}

/**
 * Restate's deployment status (as `restate deployments list` tells it): `Active` while it has the
 * latest revision of one of its services; otherwise `Draining` while invocations pinned to it run,
 * then `Drained` (safe to remove).
 */
export function deploymentStatus(deployment, latestDeploymentOf, activeInvocations) {
  const serving = (deployment.services || []).some(
    (service) => !(service.name in latestDeploymentOf) || latestDeploymentOf[service.name] === deployment.id,
  );
  if (serving) return 'Active';
  return activeInvocations > 0 ? 'Draining' : 'Drained';
}

/**
 * The waits after the next failures under `policy` (the admin API's `retry_policy`: friendly durations):
 * the n-th failure in a row waits `initial × factor^(n-1)`, at most `max`, and after the failure of
 * attempt `max_attempts` the invocation is paused or killed. `firstFailure` is the number the next
 * failure would have. Returns `{delays: [ms...], then: 'Pause'|'Kill'|null}` (`then` once the limit is within `shown`).
 */
export function retrySchedule(policy, firstFailure, shown = 4) {
  if (!policy) return { delays: [], then: null };
  const initial = parseFriendly(policy.initial_interval) ?? 0;
  const max = parseFriendly(policy.max_interval) ?? Infinity;
  const factor = Number(policy.exponentiation_factor ?? 1);
  const maxAttempts = policy.max_attempts ?? null;
  const delays = [];
  for (let failure = Math.max(1, firstFailure); delays.length < shown; failure++) {
    if (maxAttempts !== null && failure >= maxAttempts) return { delays, then: policy.on_max_attempts ?? 'Pause' };
    delays.push(Math.min(initial * factor ** (failure - 1), max));
  }
  return { delays, then: null };
}

/** The WHERE clause of the invocations list for a filter (values quoted by `lit`). */
export function invocationFilterSql(filter, lit, nowMs) {
  const clauses = [];
  if (filter.service) clauses.push(`target_service_name = ${lit(filter.service)}`);
  if (filter.handler) clauses.push(`target_handler_name = ${lit(filter.handler)}`);
  if (filter.key) clauses.push(`target_service_key = ${lit(filter.key)}`);
  if (filter.status) clauses.push(`status = ${lit(filter.status)}`);
  if (filter.deployment) clauses.push(`pinned_deployment_id = ${lit(filter.deployment)}`);
  if (filter.olderMs !== null && filter.olderMs !== undefined) {
    clauses.push(`created_at < CAST(${lit(new Date(nowMs - filter.olderMs).toISOString())} AS TIMESTAMP)`);
  }
  if (filter.newerMs !== null && filter.newerMs !== undefined) {
    clauses.push(`created_at >= CAST(${lit(new Date(nowMs - filter.newerMs).toISOString())} AS TIMESTAMP)`);
  }
  return clauses.length ? 'WHERE ' + clauses.join(' AND ') : '';
}
