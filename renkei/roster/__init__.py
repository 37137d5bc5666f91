"""roster domain."""
