package foundations.services;

import java.util.List;

/** The subscription seed's request: who subscribes, the card to charge and the subscriptions to add. */
public record SubscriptionRequest(String userId, String creditCard, List<String> subscriptions) {}
