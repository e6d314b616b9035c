package foundations.services;

/** One shopping-cart line: a product, its unit price and the quantity. */
public record Item(String productId, double price, int quantity) {}
