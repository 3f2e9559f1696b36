"""review: see docs/architecture.md."""
