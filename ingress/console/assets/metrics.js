// Reads duro's own metrics (`GET /metrics`, Prometheus text) into the
// overview's throughput and latency series. The node keeps no history: the
// console samples while the overview is open and keeps the last minutes in
// the tab's session storage, so a reload does not start from nothing.

import { metricsText } from './api.js';

export const SAMPLE_INTERVAL_MS = 2000;
export const WINDOW_MS = 5 * 60 * 1000;
const MAX_GAP_MS = 3 * SAMPLE_INTERVAL_MS;
const STORAGE_KEY = 'duro-console-metric-samples';

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** `[{name, labels, value}]` of every sample line (comments and malformed lines are skipped). */
export function parsePrometheus(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = LINE.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, name, value] of (match[2] || '').matchAll(LABEL)) labels[name] = value.replace(/\\(.)/g, '$1');
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

function total(samples, name) {
  return samples.filter((s) => s.name === name).reduce((sum, s) => sum + s.value, 0);
}

/** Cumulative bucket counts of a histogram, summed over its label sets: `{le: count}`. */
function buckets(samples, name) {
  const byLe = {};
  for (const s of samples) {
    if (s.name !== name + '_bucket') continue;
    byLe[s.labels.le] = (byLe[s.labels.le] || 0) + s.value;
  }
  return byLe;
}

/** What one scrape says: completed invocations so far and the attempt-duration histogram. */
export function snapshot(samples, atMs) {
  return {
    at: atMs,
    invocations: total(samples, 'duro_invocations_total'),
    attempts: buckets(samples, 'duro_invoker_attempt_duration_seconds'),
  };
}

/** The q-quantile (seconds) of the observations between two cumulative bucket sets, by the bucket's upper bound. */
export function quantileBetween(before, after, q) {
  const bounds = Object.keys(after)
    .map((le) => ({ le, bound: le === '+Inf' ? Infinity : Number(le) }))
    .sort((a, b) => a.bound - b.bound);
  const count = (after['+Inf'] || 0) - ((before || {})['+Inf'] || 0);
  if (count <= 0) return null;
  for (const { le, bound } of bounds) {
    const seen = (after[le] || 0) - ((before || {})[le] || 0);
    if (seen >= q * count) return Number.isFinite(bound) ? bound : null;
  }
  return null;
}

/** Points of the chart from consecutive snapshots: `{at, perSecond, p50Ms, p95Ms}`. */
export function series(snapshots) {
  const points = [];
  for (let i = 1; i < snapshots.length; i++) {
    const a = snapshots[i - 1];
    const b = snapshots[i];
    const seconds = (b.at - a.at) / 1000;
    if (seconds <= 0 || seconds * 1000 > MAX_GAP_MS || b.invocations < a.invocations) continue; // a gap, or a node restarted
    const p50 = quantileBetween(a.attempts, b.attempts, 0.5);
    const p95 = quantileBetween(a.attempts, b.attempts, 0.95);
    points.push({
      at: b.at,
      perSecond: (b.invocations - a.invocations) / seconds,
      p50Ms: p50 === null ? null : p50 * 1000,
      p95Ms: p95 === null ? null : p95 * 1000,
    });
  }
  return points;
}

function load() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || '[]');
    return Array.isArray(stored) ? stored : [];
  } catch {
    return [];
  }
}

let snapshots = load();

/** Scrape once, remember the snapshot, forget what is older than the window; returns the snapshots. */
export async function sample() {
  const now = Date.now();
  const taken = snapshot(parsePrometheus(await metricsText()), now);
  snapshots = snapshots.filter((s) => s.at > now - WINDOW_MS && s.at < now);
  snapshots.push(taken);
  try {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(snapshots));
  } catch {
    // storage full or disabled: the chart still works for this page's life
  }
  return snapshots;
}
