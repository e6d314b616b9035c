// Reads journal entries (`sys_journal` rows; `entry_json` is Restate's JSON of
// the decoded entry) into what the timeline shows: a kind, a one-line summary,
// the completion it waits for or completes, and the entry's data.

import { readValue, shortValue, time } from './format.js';

/** The entry's JSON (Restate's `{"Command": {"Run": {...}}}` shape), or null when the row has none. */
export function parseEntry(row) {
  if (!row.entry_json) return null;
  try {
    return JSON.parse(row.entry_json);
  } catch {
    return null;
  }
}

function isByteArray(value) {
  return Array.isArray(value) && value.every((b) => Number.isInteger(b) && b >= 0 && b <= 255);
}

/** The entry's data with byte arrays (payloads, values, results) turned into what they hold: JSON (when exact) or text. */
export function readable(value, key = '') {
  if (isByteArray(value) && (value.length > 0 || /payload|value|parameter|Success/.test(key))) {
    if (/trace_id|span_id/.test(key)) return value.map((b) => b.toString(16).padStart(2, '0')).join('');
    const read = readValue(value);
    return read.kind === 'json' && read.exact ? JSON.parse(read.text) : read.text;
  }
  if (Array.isArray(value)) return value.map((item) => readable(item, key));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, readable(v, k)]));
  }
  return value;
}

function resultText(result) {
  if (result === undefined || result === null) return '';
  if (result === 'Void') return 'void';
  if (typeof result === 'string') return result;
  if ('Success' in result) return '→ ' + shortValue(result.Success);
  if ('Failure' in result) return `failed ${result.Failure.code}: ${result.Failure.message}`;
  if ('StateKeys' in result) return '→ ' + JSON.stringify(result.StateKeys);
  if ('InvocationId' in result) return '→ ' + result.InvocationId;
  return JSON.stringify(readable(result));
}

function targetText(target) {
  if (!target) return '';
  const [kind, t] = Object.entries(target)[0] || [];
  if (!t) return '';
  return kind === 'Service' ? `${t.name}/${t.handler}` : `${t.name}/${t.key}/${t.handler}`;
}

/**
 * One timeline item: `{index, kind: 'command'|'notification', type, name, summary, completionId,
 * completes (the completion id a notification carries), promise, data}`.
 */
export function describeEntry(row) {
  const entry = parseEntry(row);
  const [family, typeName] = String(row.entry_type || '').split(': ');
  const item = {
    index: row.index,
    kind: family === 'Command' ? 'command' : 'notification',
    type: typeName || row.entry_type,
    name: row.name || '',
    appendedAt: row.appended_at,
    summary: '',
    completionId: null,
    completes: null,
    promise: null,
    calledId: null,
    entry,
    data: entry ? readable(entry) : null,
  };
  if (!entry) return item;
  if (entry.Command) {
    const [type, body] = Object.entries(entry.Command)[0];
    item.completionId = body.completion_id ?? body.result_completion_id ?? null;
    switch (type) {
      case 'Input':
        item.summary = shortValue(body.payload);
        break;
      case 'Output':
        item.summary = resultText(body.result);
        break;
      case 'GetEagerState':
        item.summary = `${body.key} ${resultText(body.result)}`;
        break;
      case 'SetState':
        item.summary = `${body.key} = ${shortValue(body.value)}`;
        break;
      case 'GetLazyState':
      case 'ClearState':
        item.summary = body.key;
        break;
      case 'GetPromise':
      case 'PeekPromise':
        item.summary = `promise “${body.key}”`;
        item.promise = body.key;
        break;
      case 'CompletePromise':
        item.summary = `promise “${body.key}” ${resultText(body.value)}`;
        item.promise = body.key;
        break;
      case 'Sleep':
        item.summary = `until ${time(body.wake_up_time)}`;
        break;
      case 'Call':
        item.summary = `${targetText(body.request?.invocation_target)} ${shortValue(body.request?.parameter ?? [])}`;
        item.calledId = body.request?.invocation_id ?? null;
        break;
      case 'OneWayCall':
        item.summary = `${targetText(body.request?.invocation_target)} at ${time(body.invoke_time)}`;
        item.calledId = body.request?.invocation_id ?? null;
        item.completionId = null;
        break;
      case 'CompleteAwakeable':
        item.summary = `${body.id} ${resultText(body.result)}`;
        break;
      case 'SendSignal':
        item.summary = `to ${body.target_invocation_id}`;
        break;
      case 'AttachInvocation':
      case 'GetInvocationOutput':
        item.summary = JSON.stringify(readable(body.target));
        break;
      default:
        break;
    }
  } else if (entry.Notification) {
    const [family2, inner] = Object.entries(entry.Notification)[0];
    if (family2 === 'Completion') {
      const [type, body] = Object.entries(inner)[0];
      item.type = type;
      item.completes = body.completion_id ?? null;
      item.summary = body.invocation_id ? `→ ${body.invocation_id}` : resultText(body.result);
    } else if (family2 === 'Signal') {
      item.type = 'Signal';
      const id = inner.id ? JSON.stringify(inner.id) : '';
      item.summary = `${id} ${resultText(inner.result)}`;
    }
  }
  return item;
}

/** The timeline: entries in order, each command marked with whether its completion arrived. */
export function timeline(rows) {
  const items = rows.map(describeEntry);
  const completed = new Set(items.filter((i) => i.completes !== null).map((i) => i.completes));
  for (const item of items) {
    item.waiting = item.kind === 'command' && item.completionId !== null && !completed.has(item.completionId);
  }
  return items;
}
