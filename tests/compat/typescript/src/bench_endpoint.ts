/**
 * The benchmark's services (benchmarks/services.py) on the official TypeScript SDK: a cheap endpoint, so that the runtime sets the pace.
 *
 * Usage: node dist/bench_endpoint.js --port N. Serves HTTP/2 cleartext (bidirectional) with the SDK's own
 * `restate.serve`, the same names and JSON shapes as the Python services: Greeter.greet, Counter.add/get,
 * ThreeSteps.run (a workflow of three ctx.run steps) and Steps.steps(n). It lives here because this project
 * already installs and compiles the SDK (scripts/setup.d/20-typescript.sh); `python -m benchmarks run --sdk
 * typescript` starts it.
 */

import "./polyfill.js";

import { parseArgs } from "node:util";

import * as restate from "@restatedev/restate-sdk";

import { counter, greeter } from "./services.js"; // the compatibility matrix's Greeter and Counter: the same names and shapes

const MAX_STEPS = 10_000;

const threeSteps = restate.workflow({
  name: "ThreeSteps",
  handlers: {
    run: async (ctx: restate.WorkflowContext, name: string): Promise<string> => {
      const first = await ctx.run("reserve", async () => 1);
      const second = await ctx.run("charge", async () => 2);
      const third = await ctx.run("confirm", async () => 3);
      return `${name}: ${first + second + third}`;
    },
  },
});

const steps = restate.service({
  name: "Steps",
  handlers: {
    steps: async (ctx: restate.Context, n: number): Promise<number> => {
      if (!Number.isInteger(n) || n < 0 || n > MAX_STEPS) {
        throw new restate.TerminalError(`n must be between 0 and ${MAX_STEPS}, got ${n}`);
      }
      let total = 0;
      for (let index = 0; index < n; index++) {
        total += await ctx.run(`step-${index}`, async () => index);
      }
      return total;
    },
  },
});

function port(argv: string[]): number {
  const { values } = parseArgs({ args: argv, options: { port: { type: "string" } } });
  const value = Number(values.port);
  if (!Number.isInteger(value) || value <= 0 || value > 65535) {
    throw new Error(`--port must be an integer in 1..65535, got ${values.port}`);
  }
  return value;
}

restate.serve({ services: [greeter, counter, threeSteps, steps], port: port(process.argv.slice(2)) }).catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
