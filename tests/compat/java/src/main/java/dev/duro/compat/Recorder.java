package dev.duro.compat;

import dev.restate.sdk.ObjectContext;
import dev.restate.sdk.SharedObjectContext;
import dev.restate.sdk.annotation.Handler;
import dev.restate.sdk.annotation.Shared;
import dev.restate.sdk.annotation.VirtualObject;
import dev.restate.sdk.common.StateKey;
import dev.restate.serde.TypeRef;
import java.util.ArrayList;
import java.util.List;

/** Recorder: a virtual object that appends items in the order its invocations run. */
@VirtualObject
public class Recorder {
  private static final StateKey<List<Integer>> ITEMS =
      StateKey.of("items", new TypeRef<List<Integer>>() {});

  @Handler
  public List<Integer> append(ObjectContext ctx, int item) {
    List<Integer> items = new ArrayList<>(ctx.get(ITEMS).orElse(List.of()));
    items.add(item);
    ctx.set(ITEMS, items);
    return items;
  }

  @Shared
  @Handler
  public List<Integer> items(SharedObjectContext ctx) {
    return ctx.get(ITEMS).orElse(List.of());
  }
}
