// The console's entry point: picks the page the URL names, renders it into
// <main>, and follows links without reloading (each page keeps its own URL,
// so it can be linked, bookmarked and reloaded).

import { h, fill, message } from './dom.js';
import { dialogOpen } from './dialog.js';
import { get } from './api.js';
import * as overview from './pages/overview.js';
import * as invocations from './pages/invocations.js';
import * as invocation from './pages/invocation.js';
import * as services from './pages/services.js';
import * as service from './pages/service.js';
import * as objectKey from './pages/key.js';
import * as deployments from './pages/deployments.js';
import * as deployment from './pages/deployment.js';

const ROUTES = [
  [/^\/ui\/?$/, overview, 'overview'],
  [/^\/ui\/invocations\/?$/, invocations, 'invocations'],
  [/^\/ui\/invocations\/([^/]+)\/?$/, invocation, 'invocations'],
  [/^\/ui\/services\/?$/, services, 'services'],
  [/^\/ui\/services\/([^/]+)\/?$/, service, 'services'],
  [/^\/ui\/services\/([^/]+)\/keys\/([^/]*)\/?$/, objectKey, 'services'],
  [/^\/ui\/deployments\/?$/, deployments, 'deployments'],
  [/^\/ui\/deployments\/([^/]+)\/?$/, deployment, 'deployments'],
];

let current = null;

/** What a page gets: its URL parameters, the <main> element, and timers that stop when the page is left. */
function pageContext(params, main) {
  const controller = new AbortController();
  const timers = [];
  return {
    params,
    query: new URLSearchParams(location.search),
    main,
    signal: controller.signal,
    navigate,
    setTitle(text) {
      document.title = `${text} · duro`;
    },
    /** Run `tick` every `ms` while the page is shown, skipping while a dialog is open, the tab is hidden or a tick still runs. */
    every(ms, tick) {
      let running = false;
      const id = setInterval(async () => {
        if (running || document.hidden || dialogOpen()) return;
        running = true;
        try {
          await tick();
        } finally {
          running = false;
        }
      }, ms);
      timers.push(id);
    },
    leave() {
      controller.abort();
      timers.forEach(clearInterval);
    },
  };
}

async function route() {
  const main = document.getElementById('main');
  if (current) current.leave();
  const path = location.pathname;
  const found = ROUTES.find(([pattern]) => pattern.test(path));
  for (const link of document.querySelectorAll('nav a')) {
    link.classList.toggle('active', Boolean(found) && link.dataset.nav === found[2]);
  }
  if (!found) {
    document.title = 'Not found · duro';
    fill(main, h('h1', null, 'No such page'), message('error', `The console has no page at ${path}.`));
    return;
  }
  const [pattern, page] = found;
  const params = pattern.exec(path).slice(1).map(decodeURIComponent);
  const context = pageContext(params, main);
  current = context;
  try {
    await page.render(context);
  } catch (error) {
    if (context !== current) return;
    fill(main, h('h1', null, 'This page failed'), message('error', error.describe ? error.describe() : String(error.message || error)));
  }
  if (context === current) performance.mark('duro:page-rendered');
}

/** Go to a console page (a path under /ui, with its query), adding it to the history unless `replace`. */
export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  route();
}

document.addEventListener('click', (event) => {
  const link = event.target.closest('a[href]');
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  if (link.target || link.origin !== location.origin || !link.pathname.startsWith('/ui')) return;
  event.preventDefault();
  navigate(link.pathname + link.search);
});

window.addEventListener('popstate', route);

async function showNode() {
  try {
    const version = await get('/version');
    fill(document.getElementById('node'), `Restate API ${version.version}`, version.ingress_endpoint ? ` · ingress ${version.ingress_endpoint}` : '');
  } catch {
    fill(document.getElementById('node'), 'node not answering');
  }
}

route();
showNode();
