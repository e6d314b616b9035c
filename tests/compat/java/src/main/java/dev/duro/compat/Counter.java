package dev.duro.compat;

import dev.restate.sdk.ObjectContext;
import dev.restate.sdk.SharedObjectContext;
import dev.restate.sdk.annotation.Handler;
import dev.restate.sdk.annotation.Shared;
import dev.restate.sdk.annotation.VirtualObject;
import dev.restate.sdk.common.StateKey;

/** Counter: a virtual object whose exclusive add sees the previous add's state. */
@VirtualObject
public class Counter {
  private static final StateKey<Long> COUNT = StateKey.of("count", Long.class);

  @Handler
  public long add(ObjectContext ctx, long delta) {
    long value = ctx.get(COUNT).orElse(0L) + delta;
    ctx.set(COUNT, value);
    return value;
  }

  @Shared
  @Handler
  public long get(SharedObjectContext ctx) {
    return ctx.get(COUNT).orElse(0L);
  }

  @Handler
  public void reset(ObjectContext ctx) {
    ctx.clearAll();
  }
}
