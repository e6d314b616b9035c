// Builds the page from DOM nodes. Strings always become text nodes or attribute
// values, never markup: this module is the console's only way to put data on
// the page, and it has no path from data to HTML.

const SVG_NS = 'http://www.w3.org/2000/svg';
const FORBIDDEN_PROPS = new Set(['innerHTML', 'outerHTML', 'srcdoc']);

function setProps(el, props) {
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (FORBIDDEN_PROPS.has(name)) throw new Error(`dom: refusing to set ${name}`);
    if (name.startsWith('on')) {
      if (typeof value !== 'function') throw new Error(`dom: ${name} must be a function`);
      el.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      el.setAttribute('class', value);
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (name === 'href') {
      el.setAttribute('href', safeHref(value));
    } else if (typeof value === 'boolean' || name === 'value') {
      el[name] = value;
    } else {
      el.setAttribute(name, String(value));
    }
  }
}

/** Only the console's own paths and http(s) URLs are links; anything else (javascript:, data:) is refused. */
export function safeHref(value) {
  const text = String(value);
  if (text.startsWith('/') && !text.startsWith('//')) return text;
  if (/^https?:\/\//i.test(text)) return text;
  throw new Error(`dom: refusing the link ${JSON.stringify(text)}`);
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** `h('a', {href: '/ui'}, 'text', otherNode)`: an element with properties and children (strings are text). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  return append(el, children);
}

/** The same for SVG elements (the overview's chart). */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) el.setAttribute(name, String(value));
  }
  return append(el, children);
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

/** Replace `el`'s children with `children`. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A link to one of the console's pages, built from path segments (each one URL-encoded). */
export function pageLink(text, ...segments) {
  return h('a', { href: pagePath(...segments) }, text);
}

export function pagePath(...segments) {
  return '/ui/' + segments.map((segment) => encodeURIComponent(String(segment))).join('/');
}

/** A table: `columns` are header texts, `rows` arrays of cells (strings or nodes). */
export function table(columns, rows, props) {
  return h(
    'table',
    props,
    h('thead', null, h('tr', null, columns.map((c) => h('th', null, c)))),
    h('tbody', null, rows.map((cells) => (cells instanceof Node ? cells : h('tr', null, cells.map((c) => h('td', null, c)))))),
  );
}

/** A section with a heading. */
export function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', null, title), ...children);
}

/** A two-column list of facts: `[[label, value], ...]` (rows whose value is missing are left out). */
export function facts(pairs) {
  const rows = pairs.filter(([, value]) => value !== undefined && value !== null && value !== '');
  return h('dl', { class: 'facts' }, rows.map(([label, value]) => [h('dt', null, label), h('dd', null, value)]));
}

/** A status word as a coloured badge. */
export function badge(word) {
  const text = String(word ?? 'unknown');
  return h('span', { class: 'badge badge-' + text.toLowerCase().replace(/[^a-z-]/g, '') }, text);
}

export function message(kind, ...children) {
  return h('p', { class: 'message message-' + kind, role: kind === 'error' ? 'alert' : 'status' }, ...children);
}
