"""The edges: HTTP routes (Chalice Blueprints) and the event-source handlers; each parses, calls one use case."""
