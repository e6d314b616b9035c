/**
 * The compatibility matrix's test services on the official TypeScript SDK: the same names, JSON shapes and side-effect lines as tests/services/official_python.py.
 */

import * as restate from "@restatedev/restate-sdk";

import { countSideEffects, recordSideEffect } from "./side_effects.js";

export const greeter = restate.service({
  name: "Greeter",
  handlers: {
    greet: async (_ctx: restate.Context, name: string): Promise<string> => `Hello ${name}!`,
  },
});

export const counter = restate.object({
  name: "Counter",
  handlers: {
    add: async (ctx: restate.ObjectContext, delta: number): Promise<number> => {
      const value = ((await ctx.get<number>("count")) ?? 0) + delta;
      ctx.set("count", value);
      return value;
    },
    get: restate.handlers.object.shared(async (ctx: restate.ObjectSharedContext): Promise<number> => (await ctx.get<number>("count")) ?? 0),
    reset: async (ctx: restate.ObjectContext): Promise<void> => {
      ctx.clearAll();
    },
  },
});

export const recorder = restate.object({
  name: "Recorder",
  handlers: {
    append: async (ctx: restate.ObjectContext, item: number): Promise<number[]> => {
      const items = (await ctx.get<number[]>("items")) ?? [];
      items.push(item);
      ctx.set("items", items);
      return items;
    },
    items: restate.handlers.object.shared(async (ctx: restate.ObjectSharedContext): Promise<number[]> => (await ctx.get<number[]>("items")) ?? []),
  },
});

export const steps = restate.service({
  name: "Steps",
  handlers: {
    run_steps: async (ctx: restate.Context, n: number): Promise<number> => {
      const invocationId = ctx.request().id;
      recordSideEffect(`attempt ${invocationId}`); // not journaled: one line per attempt
      let total = 0;
      for (let i = 0; i < n; i++) {
        total += await ctx.run(`step-${i}`, () => {
          recordSideEffect(`step ${invocationId} ${i}`);
          return i;
        });
      }
      return total;
    },

    sleep_then: async (ctx: restate.Context, millis: number): Promise<string> => {
      await ctx.sleep(millis);
      return "slept";
    },

    fail_terminal: async (_ctx: restate.Context, message: string): Promise<string> => {
      throw new restate.TerminalError(message, { errorCode: 418 });
    },

    // Fails (retryably) the first two times for `name`, then succeeds.
    flaky: async (ctx: restate.Context, name: string): Promise<string> =>
      ctx.run("flaky", () => {
        const seen = countSideEffects(`flaky ${name}`);
        recordSideEffect(`flaky ${name}`);
        if (seen < 2) {
          throw new Error(`flaky failure ${seen + 1}`);
        }
        return `ok after ${seen + 1}`;
      }),

    wait_awakeable: async (ctx: restate.Context, name: string): Promise<string> => {
      const { id, promise } = ctx.awakeable<string>();
      await ctx.run("publish", () => recordSideEffect(`awakeable ${name} ${id}`));
      return promise;
    },

    call_counter: async (ctx: restate.Context, key: string): Promise<number> => ctx.objectClient(counter, key).add(1),

    send_in_order: async (ctx: restate.Context, key: string): Promise<void> => {
      for (let i = 0; i < 5; i++) {
        ctx.objectSendClient(recorder, key).append(i);
      }
    },

    delayed_send: async (ctx: restate.Context, key: string): Promise<void> => {
      ctx.objectSendClient(recorder, key).append(99, restate.rpc.sendOpts({ delay: { milliseconds: 500 } }));
    },
  },
});

export const durable = restate.object({
  name: "Durable",
  handlers: {
    // A journaled side effect, state, a durable sleep, then the answer: the crash test's handler.
    step_sleep_step: async (ctx: restate.ObjectContext, millis: number): Promise<string> => {
      const charged = await ctx.run("charge", () => {
        recordSideEffect(`charge ${ctx.key}`);
        return "charged";
      });
      ctx.set("status", charged);
      await ctx.sleep(millis);
      return `${charged} then slept`;
    },
    status: restate.handlers.object.shared(async (ctx: restate.ObjectSharedContext): Promise<string> => (await ctx.get<string>("status")) ?? "none"),
  },
});

export const signup = restate.workflow({
  name: "Signup",
  handlers: {
    run: async (ctx: restate.WorkflowContext, email: string): Promise<string> => {
      await ctx.run("create", () => recordSideEffect(`signup-create ${ctx.key}`));
      ctx.set("stage", "waiting");
      const clicked = await ctx.promise<string>("clicked");
      ctx.set("stage", "done");
      return `${email} verified with ${clicked}`;
    },
    click: async (ctx: restate.WorkflowSharedContext, secret: string): Promise<void> => {
      await ctx.promise<string>("clicked").resolve(secret);
    },
    stage: async (ctx: restate.WorkflowSharedContext): Promise<string> => (await ctx.get<string>("stage")) ?? "new",
  },
});

export const TEST_SERVICES = [greeter, counter, recorder, steps, durable, signup];
