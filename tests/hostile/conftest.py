"""Every case of the hostile corpus is ``timed``: it asserts that the fleetgate process
finished in under 2 s (support/hostile.py ``LIMIT_S``). scripts/test runs ``timed``
tests alone, after the parallel part, so the limit measures fleetgate and not the
other tests sharing the machine's two cores."""

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:  # this hook sees the whole session's items: mark only ours
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.timed)
