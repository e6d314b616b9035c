package dev.duro.compat;

import dev.restate.sdk.SharedWorkflowContext;
import dev.restate.sdk.WorkflowContext;
import dev.restate.sdk.annotation.Handler;
import dev.restate.sdk.annotation.Shared;
import dev.restate.sdk.annotation.Workflow;
import dev.restate.sdk.common.DurablePromiseKey;
import dev.restate.sdk.common.StateKey;

/** Signup: a workflow that waits on a durable promise resolved by its click handler. */
@Workflow
public class Signup {
  private static final DurablePromiseKey<String> CLICKED = DurablePromiseKey.of("clicked", String.class);
  private static final StateKey<String> STAGE = StateKey.of("stage", String.class);

  @Workflow
  public String run(WorkflowContext ctx, String email) {
    String key = ctx.key();
    ctx.run("create", () -> SideEffects.record("signup-create " + key));
    ctx.set(STAGE, "waiting");
    String clicked = ctx.promise(CLICKED).future().await();
    ctx.set(STAGE, "done");
    return email + " verified with " + clicked;
  }

  @Shared
  @Handler
  public void click(SharedWorkflowContext ctx, String secret) {
    ctx.promiseHandle(CLICKED).resolve(secret);
  }

  @Shared
  @Handler
  public String stage(SharedWorkflowContext ctx) {
    return ctx.get(STAGE).orElse("new");
  }
}
