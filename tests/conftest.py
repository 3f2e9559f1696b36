"""Test-wide fixtures: the Docker engine, test images, the loopback registry.

``tests/`` is on ``sys.path`` (pytest's rootdir-less conftest import), so test modules
import the shared infrastructure as ``from support.wait import wait_for``.

Tests marked ``@pytest.mark.docker`` automatically use ``docker_client`` and therefore
*fail* (never skip) when no engine answers; see ``support/engine.py``.
"""

from collections.abc import Iterator

import pytest
import structlog

pytest_plugins = ["support.engine", "support.registry", "support.gitfixtures", "support.leaks"]


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults.

    ``fleetgate``'s ``main()`` configures logging process-wide (level info, JSON to
    stderr); without this, a test that runs ``main()`` would change what later tests
    capture (debug events filtered out).
    """
    yield
    structlog.reset_defaults()
