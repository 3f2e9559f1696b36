"""reconcile: see docs/architecture.md."""
