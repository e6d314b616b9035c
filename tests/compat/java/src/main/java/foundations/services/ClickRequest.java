package foundations.services;

/** The signup workflow seed's click signal: the secret from the e-mailed link. */
public record ClickRequest(String secret) {}
