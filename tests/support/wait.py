"""The one way tests wait: poll a predicate until it returns something truthy.

Never ``time.sleep`` in a test; wait for the observable condition instead, so a
test is as fast as the system allows and fails with a message saying *what* did
not happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Return the first truthy value of ``predicate()``; raise ``AssertionError`` on timeout.

    ``what`` names the awaited condition in the failure message. The predicate is
    called at least once, even with ``timeout=0``; exceptions it raises propagate.
    """
    deadline = time.monotonic() + timeout
    last: T = predicate()
    while not last:
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what} (last: {last!r})"
            )
        time.sleep(interval)
        last = predicate()
    return last
