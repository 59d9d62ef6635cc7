"""Test-only peer SDKs, each run in a subprocess from its own ``.peer/<name>/`` folder (never imported here)."""
