package dev.duro.compat;

import dev.restate.sdk.Context;
import dev.restate.sdk.annotation.Handler;
import dev.restate.sdk.annotation.Service;

/** Greeter: the stateless hello-world service. */
@Service
public class Greeter {
  @Handler
  public String greet(Context ctx, String name) {
    return "Hello " + name + "!";
  }
}
