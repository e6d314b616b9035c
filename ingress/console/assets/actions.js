// Invocation commands with a confirmation, on one invocation or on many.

import { h, message } from './dom.js';
import { send, eachBounded } from './api.js';
import { confirmAction } from './dialog.js';
import { ACTIONS } from './model.js';
import { truncate } from './format.js';

/** How many commands run at once on a selection. */
const CONCURRENT_COMMANDS = 4;

function commandPath(invocationId, command) {
  return `/invocations/${encodeURIComponent(invocationId)}/${command}`;
}

/** The status code's meaning for a command that was accepted (Restate 1.7's codes). */
function outcomeText(command, status, body) {
  if (command === 'restart-as-new' && body && body.new_invocation_id) return `restarted as ${body.new_invocation_id}`;
  if (status === 202) return 'accepted: the handler or the invoker acts on it next';
  return 'done';
}

/**
 * Ask, then run `command` on every id; `describeTarget` says what the selection is (shown in the
 * confirmation). Resolves to a summary node, or null if the operator cancelled.
 */
export async function runCommand(command, invocationIds, describeTarget) {
  const action = ACTIONS[command];
  const count = invocationIds.length;
  const ok = await confirmAction({
    title: `${action.label} ${count === 1 ? 'this invocation' : `${count} invocations`}?`,
    body: [h('p', null, action.explain), h('p', null, describeTarget), count > 1 ? listOf(invocationIds) : null],
    confirmLabel: `${action.label} ${count === 1 ? 'invocation' : `${count} invocations`}`,
    danger: action.danger,
  });
  if (!ok) return null;
  const results = await eachBounded(invocationIds, CONCURRENT_COMMANDS, (id) => send('PATCH', commandPath(id, command)));
  const failed = results.filter((r) => !r.ok);
  const done = results.length - failed.length;
  if (count === 1) {
    const [only] = results;
    return only.ok
      ? message('success', `${action.label}: ${outcomeText(command, only.value.status, only.value.body)}.`)
      : message('error', `${action.label} failed: ${only.error.status} ${only.error.message}`);
  }
  return message(
    failed.length ? 'error' : 'success',
    `${action.label}: ${done} of ${count} done`,
    failed.length ? `, ${failed.length} failed:` : '.',
    failed.length
      ? h(
          'ul',
          null,
          failed.slice(0, 10).map((r) => h('li', null, `${r.item}: ${r.error.status} ${truncate(r.error.message, 200)}`)),
        )
      : null,
  );
}

function listOf(ids) {
  const shown = ids.slice(0, 8);
  return h('ul', { class: 'ids' }, shown.map((id) => h('li', null, id)), ids.length > shown.length ? h('li', null, `… and ${ids.length - shown.length} more`) : null);
}
