package dev.duro.compat;

import dev.restate.sdk.ObjectContext;
import dev.restate.sdk.SharedObjectContext;
import dev.restate.sdk.annotation.Handler;
import dev.restate.sdk.annotation.Name;
import dev.restate.sdk.annotation.Shared;
import dev.restate.sdk.annotation.VirtualObject;
import dev.restate.sdk.common.StateKey;
import java.time.Duration;

/** Durable: a journaled side effect, state, a durable sleep, then the answer. */
@VirtualObject
public class Durable {
  private static final StateKey<String> STATUS = StateKey.of("status", String.class);

  @Name("step_sleep_step")
  @Handler
  public String stepSleepStep(ObjectContext ctx, long millis) {
    String key = ctx.key();
    String charged =
        ctx.run(
            "charge",
            String.class,
            () -> {
              SideEffects.record("charge " + key);
              return "charged";
            });
    ctx.set(STATUS, charged);
    ctx.sleep(Duration.ofMillis(millis));
    return charged + " then slept";
  }

  @Shared
  @Handler
  public String status(SharedObjectContext ctx) {
    return ctx.get(STATUS).orElse("none");
  }
}
