"""Use cases: create an order, accept a notification, apply it, publish events, check a client result."""
