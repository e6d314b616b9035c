"""The seed examples of duro's SDK: a subscription service, a shopping cart object and a signup workflow."""
