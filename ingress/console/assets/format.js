// Turns the API's values (RFC 3339 times, ISO durations, hex bytes, byte
// arrays) into the text the pages show.

const UNITS = [
  ['d', 86400000],
  ['h', 3600000],
  ['m', 60000],
  ['s', 1000],
];

/** `1h 5m`, `42s`, `350ms`. */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '';
  const sign = ms < 0 ? '-' : '';
  let rest = Math.abs(Math.round(ms));
  if (rest < 1000) return `${sign}${rest}ms`;
  const parts = [];
  for (const [unit, size] of UNITS) {
    if (rest >= size && parts.length < 2) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return sign + parts.join(' ');
}

/** Milliseconds of a duration written as `30s`, `5m`, `2h`, `1d` or `500ms`; null if it is none of these. */
export function parseDuration(text) {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(String(text ?? ''));
  if (!match) return null;
  const size = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000 }[match[2]];
  return Math.round(Number(match[1]) * size);
}

/** Milliseconds of Restate's friendly durations (`1day 30m`, `500ms`, `1h`) and ISO ones (`PT0.5S`). */
export function parseFriendly(text) {
  if (!text) return null;
  const iso = /^PT(\d+(?:\.\d+)?)S$/.exec(text);
  if (iso) return Math.round(Number(iso[1]) * 1000);
  const sizes = { ms: 1, s: 1000, sec: 1000, m: 60000, min: 60000, h: 3600000, hr: 3600000, d: 86400000, day: 86400000, days: 86400000 };
  let total = 0;
  let found = false;
  for (const [, amount, unit] of String(text).matchAll(/(\d+(?:\.\d+)?)\s*([a-z]+)/g)) {
    if (!(unit in sizes)) return null;
    total += Number(amount) * sizes[unit];
    found = true;
  }
  return found ? Math.round(total) : null;
}

export function parseTime(iso) {
  if (!iso) return null;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : ms;
}

/** `2026-11-30 12:07:43` in the browser's time zone. */
export function time(iso) {
  const ms = typeof iso === 'number' ? iso : parseTime(iso);
  if (ms === null) return '';
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `12s ago`, `in 5m`. */
export function relative(iso, now = Date.now()) {
  const ms = typeof iso === 'number' ? iso : parseTime(iso);
  if (ms === null) return '';
  const delta = now - ms;
  return delta >= 0 ? `${duration(delta)} ago` : `in ${duration(-delta)}`;
}

export function hexToBytes(hex) {
  const text = String(hex ?? '');
  const bytes = new Uint8Array(text.length >> 1);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(text.substr(i * 2, 2), 16);
  return bytes;
}

export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

export function encodeText(text) {
  return utf8Encoder.encode(text);
}

/** The bytes as UTF-8 text, or null if they are not UTF-8. */
export function decodeText(bytes) {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

/**
 * How a stored value reads: `{kind: 'json', text}`, `{kind: 'text', text}`, `{kind: 'binary', text: hex}`
 * or `{kind: 'empty', text: ''}`; `bytes` is a Uint8Array or an array of numbers. JSON is laid out
 * by `reindent` (numbers stay as written); `exact` says whether JSON.parse reads it without loss.
 */
export function readValue(bytes) {
  const array = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes ?? []);
  if (array.length === 0) return { kind: 'empty', text: '' };
  const text = decodeText(array);
  if (text === null) return { kind: 'binary', text: bytesToHex(array) };
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { kind: 'text', text };
  }
  return { kind: 'json', text: reindent(text), exact: JSON.stringify(parsed) === text.trim() };
}

/**
 * Valid JSON text laid out with two-space indentation by moving whitespace only: every number,
 * string and escape stays exactly as written (JSON.stringify would turn `1.0` into `1`).
 */
export function reindent(json) {
  let out = '';
  let depth = 0;
  let inString = false;
  const newline = () => '\n' + '  '.repeat(depth);
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (inString) {
      out += c;
      if (c === '\\') out += json[++i];
      else if (c === '"') inString = false;
      continue;
    }
    if (c === ' ' || c === '\n' || c === '\r' || c === '\t') continue;
    if (c === '"') {
      inString = true;
      out += c;
    } else if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      let j = i + 1;
      while (j < json.length && ' \n\r\t'.includes(json[j])) j++;
      if (json[j] === close) {
        out += c + close;
        i = j;
      } else {
        depth += 1;
        out += c + newline();
      }
    } else if (c === '}' || c === ']') {
      depth -= 1;
      out += newline() + c;
    } else if (c === ',') {
      out += ',' + newline();
    } else if (c === ':') {
      out += ': ';
    } else {
      out += c;
    }
  }
  return out;
}

/** One line of a value, at most `max` characters, as written. */
export function shortValue(bytes, max = 80) {
  const value = readValue(bytes);
  if (value.kind === 'empty') return '(empty)';
  const line = value.kind === 'binary' ? `(binary) ${value.text}` : decodeText(bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes)).replace(/\s+/g, ' ');
  return line.length > max ? line.slice(0, max - 1) + '…' : line;
}

export function truncate(text, max = 120) {
  const line = String(text ?? '');
  return line.length > max ? line.slice(0, max - 1) + '…' : line;
}
