package foundations.services;

import com.fasterxml.jackson.annotation.JsonIgnore;
import java.util.ArrayList;
import java.util.List;

/** The shopping-cart seed's state: an immutable list of items. */
public record Cart(List<Item> items) {
  public Cart() {
    this(List.of());
  }

  /** A new cart with item appended; this cart is unchanged. */
  public Cart addItem(Item item) {
    List<Item> added = new ArrayList<>(items);
    added.add(item);
    return new Cart(List.copyOf(added));
  }

  @JsonIgnore
  public double getTotalPrice() {
    return items.stream().mapToDouble(item -> item.price() * item.quantity()).sum();
  }
}
