"""render.compose: see docs/architecture.md."""
