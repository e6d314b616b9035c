package foundations.services;

/** The signup workflow seed's input. */
public record User(String name, String email) {}
