"""Giving the memory a full pass freed back to the system (glibc's ``malloc_trim``).

A full pass (render, validate, plan, apply) allocates a few MB that Python frees when
the pass ends, but glibc keeps freed pages inside its heap unless they sit at its very
top; an agent that then idles for hours would hold them for nothing. After each full
pass the agent asks glibc to return them: the idle agent's RSS drops by about 1 MB
(``bench/footprint.py``), for well under a millisecond of CPU per full pass, nothing
per idle pass. On a C library without ``malloc_trim`` (musl) it does nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None)  # the C library this interpreter already runs on
    except OSError:  # pragma: no cover - a platform without dlopen(NULL)
        return None
    trim: Callable[[int], int] | None = getattr(libc, "malloc_trim", None)
    return trim


_TRIM = _malloc_trim()


def release_freed_memory() -> bool:
    """Return the C heap's free pages to the system; ``True`` when anything was released."""
    return _TRIM is not None and bool(_TRIM(0))
