"""Shared test infrastructure: waiting, the Docker engine, a loopback registry."""
