package dev.duro.compat;

import dev.restate.sdk.endpoint.Endpoint;
import dev.restate.sdk.http.vertx.RestateHttpServer;
import foundations.services.ShoppingCartObject;
import foundations.services.SignupWorkflow;
import foundations.services.SubscriptionService;

/** Serves the test services and the seed examples on the port given as the first argument (else env PORT, else 9080). */
public final class App {
  private App() {}

  public static void main(String[] args) {
    int port = Integer.parseInt(args.length > 0 ? args[0] : System.getenv().getOrDefault("PORT", "9080"));
    Endpoint endpoint =
        Endpoint.bind(new Greeter())
            .bind(new Counter())
            .bind(new Steps())
            .bind(new Recorder())
            .bind(new Durable())
            .bind(new Signup())
            .bind(new SubscriptionService())
            .bind(new ShoppingCartObject())
            .bind(new SignupWorkflow())
            .build();
    RestateHttpServer.listen(endpoint, port);
  }
}
