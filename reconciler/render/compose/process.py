"""The process and name-resolution keys of a service: ``expose``, ``tty``,
``stdin_open``, ``dns``, ``dns_search``, ``security_opt``, ``pid``, ``group_add``, and
``links`` (aliases on the linked service's networks).

Each maps 1:1 onto one Engine API field (``engine/spec.py``). ``security_opt`` and
``pid`` are only read here; what they may ask for is the policy's call
(``manifests/policy.py``), so a value is never dropped on the way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from reconciler.model import NetworkAttachment, ServiceSpec
from reconciler.render.compose.context import Issues, Reader, line_of, scalar_text

_EXPOSE = re.compile(r"(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp|sctp))?")
_PID = re.compile(r"host|(?:service|container):[\w.-]+")


def expose(r: Reader) -> tuple[str, ...]:
    """``expose`` entries, checked, as written (``"1883"``, ``"9000-9001/udp"``)."""
    value = r.node.get("expose")
    if value is None:
        return ()
    if not isinstance(value, list):
        r.bad("expose", "must be a list of ports")
        return ()
    out: dict[str, None] = {}
    for item in value:
        text = scalar_text(item)
        m = _EXPOSE.fullmatch(text)
        if m is None or int(m[1]) > 65535 or (m[2] and not int(m[1]) <= int(m[2]) <= 65535):
            r.bad("expose", f"{text!r} is not a port, a range or PORT/PROTOCOL")
            continue
        out[text] = None  # as written: docker compose hands the engine the text itself
    return tuple(out)


def strings(r: Reader, key: str) -> tuple[str, ...]:
    return tuple(scalar_text(v) for v in r.str_list(key))


def pid(r: Reader) -> str | None:
    value = r.str_("pid")
    if value is None or _PID.fullmatch(value):
        return value
    r.bad("pid", f"{value!r} is not host, service:NAME or container:NAME")
    return None


def group_add(r: Reader) -> tuple[str, ...]:
    value = r.node.get("group_add")
    if value is None:
        return ()
    if not isinstance(value, list) or any(isinstance(v, dict | list) for v in value):
        r.bad("group_add", "must be a list of group names or ids")
        return ()
    return tuple(scalar_text(v) for v in value)


def link_aliases(services: Mapping[str, Any], issues: Issues) -> dict[str, dict[str, None]]:
    """``links: [db:database]`` → ``{"db": {"database"}}``; an unknown service is a finding.

    On user-defined networks a link only adds a name; Compose keeps it for the linking
    container, fleetgate makes it an alias of the linked service on its networks (every
    container of the stack resolves it). ``links: [db]`` adds nothing: ``db`` resolves.
    """
    out: dict[str, dict[str, None]] = {}
    for name, node in services.items():
        links = node.get("links") if isinstance(node, dict) else None
        if not isinstance(links, list):
            continue
        for i, item in enumerate(links):
            target, _, alias = scalar_text(item).partition(":")
            if target not in services:
                issues.add(
                    line_of(links, i, line_of(node, "links")),
                    f"services.{name}.links",
                    f"service {target!r} is not defined in this stack",
                )
                continue
            if alias and alias != target:
                out.setdefault(target, {})[alias] = None
    return out


def with_aliases(spec: ServiceSpec, aliases: Mapping[str, None]) -> ServiceSpec:
    """``spec`` with ``aliases`` added on each of its networks."""
    if not aliases or not spec.networks:
        return spec
    return replace(
        spec,
        networks=tuple(
            NetworkAttachment(
                n.network, tuple(dict.fromkeys((*n.aliases, *aliases))), n.ipv4_address
            )
            for n in spec.networks
        ),
    )
