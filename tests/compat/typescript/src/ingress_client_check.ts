/**
 * Drives a running ingress with the official TypeScript ingress client (`@restatedev/restate-sdk-clients`) and prints what came back as one JSON object.
 *
 * Usage: node dist/ingress_client_check.js --ingress http://127.0.0.1:8080 [--side-effects FILE] [--run-id ID]
 * The ingress must serve the reference test services (tests/services/official_python.py).
 * Every check records its outcome (or `{"error": ...}`) so a failing check does not hide the others;
 * the Python test asserts the values. `--run-id` makes object keys, workflow ids and idempotency keys unique.
 */

import { existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import * as clients from "@restatedev/restate-sdk-clients";

const REQUEST_TIMEOUT_MS = 30_000;
const AWAKEABLE_WAIT_TIMEOUT_MS = 20_000;
const DELAYED_SEND_WAIT_TIMEOUT_MS = 20_000;
const POLL_INTERVAL_MS = 50;

// The reference services' handler signatures, as the client's types expect them (context first).
type GreeterApi = { greet: (ctx: unknown, name: string) => Promise<string> };
type CounterApi = { add: (ctx: unknown, delta: number) => Promise<number>; get: (ctx: unknown) => Promise<number> };
type RecorderApi = { append: (ctx: unknown, item: number) => Promise<number[]>; items: (ctx: unknown) => Promise<number[]> };
type StepsApi = {
  sleep_then: (ctx: unknown, millis: number) => Promise<string>;
  fail_terminal: (ctx: unknown, message: string) => Promise<string>;
  wait_awakeable: (ctx: unknown, name: string) => Promise<string>;
};
type SignupApi = {
  run: (ctx: unknown, email: string) => Promise<string>;
  click: (ctx: unknown, secret: string) => Promise<void>;
  stage: (ctx: unknown) => Promise<string>;
};

type Options = { ingress: string; sideEffects: string | undefined; runId: string };
type Summary = Record<string, unknown>;

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: { ingress: { type: "string" }, "side-effects": { type: "string" }, "run-id": { type: "string" } },
  });
  if (!values.ingress) {
    throw new Error("--ingress is required: the ingress base URL, e.g. http://127.0.0.1:8080");
  }
  return {
    ingress: values.ingress.replace(/\/+$/, ""),
    sideEffects: values["side-effects"] ?? process.env.DURO_TEST_SIDE_EFFECTS,
    runId: values["run-id"] ?? Date.now().toString(36),
  };
}

function sendSummary(send: clients.Send<unknown> | clients.WorkflowSubmission<unknown>): Summary {
  return { invocationId: send.invocationId, status: send.status, attachable: send.attachable };
}

function describeError(error: unknown): Summary {
  if (error instanceof clients.HttpCallError) {
    return { error: error.message, status: error.status, body: error.responseText };
  }
  return { error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) };
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

async function pollUntil<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const found = await probe();
    if (found !== undefined) {
      return found;
    }
    await sleep(POLL_INTERVAL_MS);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

function awakeableIdFromSideEffects(path: string | undefined, name: string): string | undefined {
  if (!path || !existsSync(path)) {
    return undefined;
  }
  const prefix = `awakeable ${name} `;
  const line = readFileSync(path, "utf-8")
    .split("\n")
    .find((candidate) => candidate.startsWith(prefix));
  return line?.slice(prefix.length).trim();
}

/** Runs one named check, storing its value (or its error) in the summary. */
async function check(summary: Summary, name: string, body: () => PromiseLike<unknown>): Promise<void> {
  try {
    summary[name] = await body();
  } catch (error) {
    summary[name] = describeError(error);
  }
}

const callOpts = <I, O>(extra: clients.IngressCallOptions<I, O> = {}) => clients.rpc.opts<I, O>({ timeout: REQUEST_TIMEOUT_MS, ...extra });
// Handlers without input reject any content-type (as Restate does), so their calls send no body at all.
const noInput = <O>() => clients.rpc.opts<void, O>({ timeout: REQUEST_TIMEOUT_MS, input: clients.serde.empty });
const sendOpts = <I>(extra: clients.IngressSendOptions<I> = {}) => clients.rpc.sendOpts<I>({ timeout: REQUEST_TIMEOUT_MS, ...extra });

async function checkCalls(ingress: clients.Ingress, summary: Summary, runId: string): Promise<void> {
  const greeter = ingress.serviceClient<GreeterApi>({ name: "Greeter" });
  const counter = ingress.objectClient<CounterApi>({ name: "Counter" }, `ts-${runId}`);
  await check(summary, "greet", () => greeter.greet("typescript", callOpts()));
  await check(summary, "counter_add", () => counter.add(3, callOpts()));
  await check(summary, "counter_add_again", () => counter.add(4, callOpts()));
  await check(summary, "counter_get", () => counter.get(noInput()));
  await check(summary, "no_input_handler_with_json_content_type", async () => ({ unexpected_success: await counter.get(callOpts()) }));
  await check(summary, "idempotent_call", async () => {
    const keyed = ingress.objectClient<CounterApi>({ name: "Counter" }, `ts-idem-call-${runId}`);
    const opts = callOpts<number, number>({ idempotencyKey: `call-${runId}` });
    const first = await keyed.add(5, opts);
    const second = await keyed.add(5, opts);
    return { first, second, total: await keyed.get(noInput()) };
  });
  await check(summary, "terminal_error", async () => {
    const steps = ingress.serviceClient<StepsApi>({ name: "Steps" });
    return { unexpected_success: await steps.fail_terminal("no such user", callOpts()) };
  });
}

async function checkSends(ingress: clients.Ingress, summary: Summary, runId: string, sideEffects: string | undefined): Promise<void> {
  const steps = ingress.serviceSendClient<StepsApi>({ name: "Steps" });
  await check(summary, "send_plain", async () => {
    const first = await steps.sleep_then(10, sendOpts());
    const second = await steps.sleep_then(10, sendOpts());
    return { first: sendSummary(first), second: sendSummary(second) };
  });
  await check(summary, "send_idempotent", async () => {
    const opts = sendOpts<number>({ idempotencyKey: `send-${runId}` });
    const first = await steps.sleep_then(200, opts);
    const second = await steps.sleep_then(200, opts);
    const attached = await ingress.result(first);
    return { first: sendSummary(first), second: sendSummary(second), attached };
  });
  await check(summary, "delayed_send", async () => {
    const key = `ts-delayed-${runId}`;
    const started = Date.now();
    const sent = await ingress.objectSendClient<RecorderApi>({ name: "Recorder" }, key).append(7, sendOpts<number>({ delay: 300 }));
    const recorder = ingress.objectClient<RecorderApi>({ name: "Recorder" }, key);
    const before = await recorder.items(noInput());
    const after = await pollUntil("the delayed append", DELAYED_SEND_WAIT_TIMEOUT_MS, async () => {
      const items = await recorder.items(noInput());
      return items.length > 0 ? items : undefined;
    });
    return { send: sendSummary(sent), before, after, elapsed_ms: Date.now() - started };
  });
  await check(summary, "awakeable", async () => {
    const name = `ts-awake-${runId}`;
    const sent = await steps.wait_awakeable(name, sendOpts<string>({ idempotencyKey: `awake-${runId}` }));
    const awakeableId = await pollUntil("the awakeable id", AWAKEABLE_WAIT_TIMEOUT_MS, () => awakeableIdFromSideEffects(sideEffects, name));
    await ingress.resolveAwakeable(awakeableId, "woken by the ts client");
    return { send: sendSummary(sent), awakeable_id: awakeableId, result: await ingress.result(sent) };
  });
}

async function checkWorkflow(ingress: clients.Ingress, summary: Summary, runId: string): Promise<void> {
  const key = `ts-wf-${runId}`;
  const signup = ingress.workflowClient<SignupApi>({ name: "Signup" }, key);
  const workflow: Summary = { key };
  summary.workflow = workflow;
  await check(workflow, "submit", async () => sendSummary(await signup.workflowSubmit("ts@example.com", sendOpts())));
  await check(workflow, "resubmit", async () => sendSummary(await signup.workflowSubmit("ts@example.com", sendOpts())));
  await check(workflow, "output_before_click", async () => ({ ready: (await signup.workflowOutput(callOpts())).ready }));
  await check(workflow, "click", async () => (await signup.click("s3cret", callOpts())) ?? null);
  await check(workflow, "attach", () => signup.workflowAttach(callOpts()));
  await check(workflow, "output_after", async () => {
    const output = await signup.workflowOutput(callOpts());
    return { ready: output.ready, result: output.ready ? output.result : null };
  });
  await check(workflow, "result_by_submission", async () => {
    const submission = await signup.workflowSubmit("ts@example.com", sendOpts());
    return { submission: sendSummary(submission), result: await ingress.result(submission) };
  });
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const ingress = clients.connect({ url: options.ingress });
  const summary: Summary = { ingress: options.ingress, run_id: options.runId, side_effects: options.sideEffects ?? null };
  await checkCalls(ingress, summary, options.runId);
  await checkSends(ingress, summary, options.runId, options.sideEffects);
  await checkWorkflow(ingress, summary, options.runId);
  process.stdout.write(JSON.stringify(summary) + "\n");
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
