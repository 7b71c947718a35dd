"""Sinks that run off the hot path: SurrealDB, TAPS pub/sub."""
