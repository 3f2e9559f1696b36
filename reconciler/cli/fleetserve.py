"""`fleetgate fleet serve`: the live fleet page (registered by :mod:`reconciler.cli.fleet`)."""

from __future__ import annotations

from typing import Any


def register_serve(subparsers: Any) -> None:
    """Not built yet: ``fleet serve`` is the next step of issue 10."""
