"""Test-wide fixtures: the Docker engine, test images, the loopback registry.

``tests/`` is on ``sys.path`` (pytest's rootdir-less conftest import), so test modules
import the shared infrastructure as ``from support.wait import wait_for``.

Tests marked ``@pytest.mark.docker`` automatically use ``docker_client`` and therefore
*fail* (never skip) when no engine answers; see ``support/engine.py``.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

pytest_plugins = ["support.engine", "support.registry", "support.gitfixtures", "support.leaks"]

LONGEST_FIRST = (
    "e2e/test_image_arm.py",
    "e2e/test_image.py",
    "e2e/test_agent_crash.py",
    "test_crash_apply.py",
    "e2e/test_agent.py",
    "test_demo.py",
    "e2e/test_waves.py",
)
"""The longest test files (160-250 s each in a 4-worker run, the image builds mostly CPU),
collected first. scripts/test hands files to workers in collection order
(``--no-loadscope-reorder``), so each starts at once on a worker of its own instead of
being left, long, at the end of the run. Files not named keep their order; a file whose
time changes only makes the run a little slower or faster, never different."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = Path(__file__).parent

    def rank(item: pytest.Item) -> int:
        rel = item.path.relative_to(tests).as_posix() if tests in item.path.parents else ""
        return LONGEST_FIRST.index(rel) if rel in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order inside and between other files stays


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults.

    ``fleetgate``'s ``main()`` configures logging process-wide (level info, JSON to
    stderr); without this, a test that runs ``main()`` would change what later tests
    capture (debug events filtered out).
    """
    yield
    structlog.reset_defaults()
