"""Persistence: the `Store` protocol (`base`) and its SQLite implementation (`sqlite`)."""
