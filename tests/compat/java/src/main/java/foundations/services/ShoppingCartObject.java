package foundations.services;

import dev.restate.sdk.ObjectContext;
import dev.restate.sdk.SharedObjectContext;
import dev.restate.sdk.annotation.Handler;
import dev.restate.sdk.annotation.Shared;
import dev.restate.sdk.annotation.VirtualObject;
import dev.restate.sdk.common.StateKey;

/** The seed's Virtual Object example, as the seed's Java code. */
// <seed>
@VirtualObject
public class ShoppingCartObject {
  private static final StateKey<Cart> CART = StateKey.of("cart", Cart.class);

  @Handler
  public Cart addItem(ObjectContext ctx, Item item) {
    var cart = ctx.get(CART).orElse(new Cart());
    var newCart = cart.addItem(item);
    ctx.set(CART, newCart);
    return cart;
  }

  @Shared
  public double getTotal(SharedObjectContext ctx) {
    var cart = ctx.get(CART).orElse(new Cart());
    return cart.getTotalPrice();
  }
}
// </seed>
