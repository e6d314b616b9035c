// A small SVG line chart over the last minutes (the overview's throughput and latency).

import { h, svg } from './dom.js';

const WIDTH = 460;
const HEIGHT = 130;
const PAD = { left: 44, right: 8, top: 10, bottom: 20 };

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

function label(value) {
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toPrecision(2);
}

/**
 * `lines`: [{name, className, points: [{at, value}]}]; consecutive points further apart than
 * `maxGapMs` are not joined. The x axis spans `windowMs` up to `nowMs`.
 */
export function lineChart({ title, unit, lines, nowMs, windowMs, maxGapMs }) {
  const values = lines.flatMap((line) => line.points.map((p) => p.value)).filter((v) => v !== null);
  const top = niceMax(Math.max(0, ...values));
  const x = (at) => PAD.left + ((at - (nowMs - windowMs)) / windowMs) * (WIDTH - PAD.left - PAD.right);
  const y = (value) => HEIGHT - PAD.bottom - (value / top) * (HEIGHT - PAD.top - PAD.bottom);
  const paths = lines.map((line) => {
    let d = '';
    let previous = null;
    for (const point of line.points) {
      if (point.value === null || point.at < nowMs - windowMs) {
        previous = null;
        continue;
      }
      const joined = previous !== null && point.at - previous.at <= maxGapMs;
      d += `${joined ? 'L' : 'M'}${x(point.at).toFixed(1)},${y(point.value).toFixed(1)}`;
      previous = point;
    }
    return svg('path', { d: d || 'M0,0', class: 'line ' + line.className, fill: 'none' });
  });
  const grid = [0, 0.5, 1].map((f) => {
    const gy = y(top * f);
    return [
      svg('line', { x1: PAD.left, x2: WIDTH - PAD.right, y1: gy, y2: gy, class: 'grid' }),
      svg('text', { x: PAD.left - 4, y: gy + 4, 'text-anchor': 'end', class: 'axis' }, label(top * f)),
    ];
  });
  const axis = [
    svg('text', { x: PAD.left, y: HEIGHT - 4, class: 'axis' }, windowMs >= 120000 ? `${Math.round(windowMs / 60000)} min ago` : `${Math.round(windowMs / 1000)} s ago`),
    svg('text', { x: WIDTH - PAD.right, y: HEIGHT - 4, 'text-anchor': 'end', class: 'axis' }, 'now'),
  ];
  const legend = h(
    'div',
    { class: 'legend' },
    lines.map((line) => h('span', { class: 'key ' + line.className }, line.name)),
    unit ? h('span', { class: 'muted' }, unit) : null,
  );
  return h(
    'figure',
    { class: 'chart' },
    h('figcaption', null, title),
    svg('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, width: WIDTH, height: HEIGHT, role: 'img', 'aria-label': title }, grid, axis, paths),
    legend,
  );
}
