package foundations.services;

import dev.duro.compat.SideEffects;

/** The seed examples' external calls (payments, subscriptions, user store, e-mail), as stubs that record a side-effect line each. */
public final class SeedStubs {
  private SeedStubs() {}

  public static String createRecurringPayment(String creditCard, String paymentId) {
    SideEffects.record("payment " + creditCard + " " + paymentId);
    return "payref-" + paymentId;
  }

  public static void createSubscription(String userId, String subscription, String payRef) {
    SideEffects.record("subscription " + userId + " " + subscription + " " + payRef);
  }

  public static void createUserEntry(String userId, User user) {
    SideEffects.record("user-entry " + userId);
  }

  public static void sendVerificationEmail(User user, String secret) {
    SideEffects.record("email " + user.email() + " " + secret);
  }
}
