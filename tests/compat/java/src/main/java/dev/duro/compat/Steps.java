package dev.duro.compat;

import dev.restate.sdk.Awakeable;
import dev.restate.sdk.Context;
import dev.restate.sdk.annotation.Handler;
import dev.restate.sdk.annotation.Name;
import dev.restate.sdk.annotation.Service;
import dev.restate.sdk.common.TerminalException;
import java.time.Duration;

/** Steps: journaled runs, sleeps, errors, retries, awakeables and calls to other services. */
@Service
public class Steps {
  @Name("run_steps")
  @Handler
  public int runSteps(Context ctx, int n) {
    String invocationId = ctx.request().invocationId().toString();
    SideEffects.record("attempt " + invocationId); // not journaled: one line per attempt
    int total = 0;
    for (int i = 0; i < n; i++) {
      int step = i;
      total +=
          ctx.run(
              "step-" + i,
              Integer.class,
              () -> {
                SideEffects.record("step " + invocationId + " " + step);
                return step;
              });
    }
    return total;
  }

  @Name("sleep_then")
  @Handler
  public String sleepThen(Context ctx, long millis) {
    ctx.sleep(Duration.ofMillis(millis));
    return "slept";
  }

  @Name("fail_terminal")
  @Handler
  public String failTerminal(Context ctx, String message) {
    throw new TerminalException(418, message);
  }

  /** Fails (retryably) the first two times for name, then succeeds. */
  @Handler
  public String flaky(Context ctx, String name) {
    return ctx.run(
        "flaky",
        String.class,
        () -> {
          long seen = SideEffects.count("flaky " + name);
          SideEffects.record("flaky " + name);
          if (seen < 2) {
            throw new IllegalStateException("flaky failure " + (seen + 1));
          }
          return "ok after " + (seen + 1);
        });
  }

  @Name("wait_awakeable")
  @Handler
  public String waitAwakeable(Context ctx, String name) {
    Awakeable<String> awakeable = ctx.awakeable(String.class);
    String awakeableId = awakeable.id();
    ctx.run("publish", () -> SideEffects.record("awakeable " + name + " " + awakeableId));
    return awakeable.await();
  }

  @Name("call_counter")
  @Handler
  public long callCounter(Context ctx, String key) {
    return CounterClient.fromContext(ctx, key).add(1L).await();
  }

  @Name("send_in_order")
  @Handler
  public void sendInOrder(Context ctx, String key) {
    for (int i = 0; i < 5; i++) {
      RecorderClient.fromContext(ctx, key).send().append(i);
    }
  }

  @Name("delayed_send")
  @Handler
  public void delayedSend(Context ctx, String key) {
    RecorderClient.fromContext(ctx, key).send().append(99, Duration.ofMillis(500));
  }
}
