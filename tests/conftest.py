"""Test-wide fixtures: the Docker engine, test images, the loopback registry.

``tests/`` is on ``sys.path`` (pytest's rootdir-less conftest import), so test modules
import the shared infrastructure as ``from support.wait import wait_for``.

Tests marked ``@pytest.mark.docker`` automatically use ``docker_client`` and therefore
*fail* (never skip) when no engine answers; see ``support/engine.py``.
"""

pytest_plugins = ["support.engine", "support.registry", "support.gitfixtures"]
