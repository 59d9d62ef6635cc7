"""End-to-end tests: the local stack as a user runs it."""
