// The console's only way to the node: the admin API's paths (the ones the
// `restate` CLI uses) and `POST /query`, on the origin that served the page.

export class ApiError extends Error {
  constructor(status, message, method, path) {
    super(message);
    this.status = status;
    this.method = method;
    this.path = path;
  }

  describe() {
    return `${this.method} ${this.path} answered ${this.status}: ${this.message}`;
  }
}

const REQUEST_TIMEOUT_MS = 30000;

async function request(method, path, body) {
  const init = { method, headers: { accept: 'application/json' }, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, `the node did not answer (${error.message})`, method, path);
  }
  const text = await response.text();
  let payload = null;
  if (text) {
    try {
      payload = JSON.parse(text);
    } catch {
      payload = null;
    }
  }
  if (!response.ok) {
    const reason = payload && typeof payload.message === 'string' ? payload.message : text || response.statusText;
    throw new ApiError(response.status, reason, method, path);
  }
  return { status: response.status, body: payload, headers: response.headers };
}

export async function get(path) {
  return (await request('GET', path)).body;
}

/** A request that changes something; resolves to `{status, body}`, rejects with ApiError. */
export function send(method, path, body) {
  return request(method, path, body);
}

/** Rows of a SQL query over Restate's tables (`POST /query`, JSON answer). */
export async function query(sql) {
  const answer = await request('POST', '/query', { query: sql });
  return answer.body.rows;
}

/** The admin API's Prometheus text (`GET /metrics`). */
export async function metricsText() {
  const response = await fetch('/metrics', { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  if (!response.ok) throw new ApiError(response.status, response.statusText, 'GET', '/metrics');
  return response.text();
}

/** A SQL string literal: the text in single quotes, each quote doubled (DataFusion reads backslashes as themselves). */
export function lit(value) {
  return "'" + String(value).replaceAll("'", "''") + "'";
}

/** Run `make(item)` for every item, at most `limit` at a time; resolves to [{item, ok, value|error}] in input order. */
export async function eachBounded(items, limit, make) {
  const results = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const index = next++;
      try {
        results[index] = { item: items[index], ok: true, value: await make(items[index]) };
      } catch (error) {
        results[index] = { item: items[index], ok: false, error };
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
