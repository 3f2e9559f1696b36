"""Redaction: the one home of what counts as a secret and how it is hidden in output.

Every command, the agent, its status and its logs use these rules; no module keeps a
copy of its own.

**Secret names.** An environment variable is secret when its name contains, ignoring
case, any of ``PASS`` (``PASSWORD``, ``PASSWD``, ``DB_PASS``), ``PWD``, ``SECRET``,
``TOKEN``, ``KEY`` (``API_KEY``, ``PRIVATE_KEY``, ``api_key``), ``CRED``
(``CREDENTIAL``), ``AUTH``, ``PRIVATE``, ``CERT``, ``SALT`` or ``COOKIE``. The rule is
broad on purpose: masking a harmless value (``KEYBOARD``) costs nothing, printing a
password is not undone.

**URL credentials.** The userinfo of a URL of *any* scheme (``https``, ``git``, ``ssh``,
``mqtt``, ``ftp``, ``file``, ...) is a credential, with or without a password: a token
is often the user part (``https://TOKEN@github.com``). ``scheme://user:pw@host`` and
``scheme://TOKEN@host`` both become ``scheme://***@host``, wherever the URL sits in a
text; a raw ``@`` inside the password (``u:p@ss@host``) is covered too.

**Known values.** A URL a user hands over (``--repo``) is split into its literal
credential strings (:func:`url_secrets`), and a desired state's secret-named variables
into their values (:func:`secret_values`). :func:`redact` removes those literals from
foreign text (git prints the userinfo as part of a host name, without the scheme), then
the URL credentials. Values shorter than :data:`MIN_SECRET_LENGTH` are not searched for
on their own (a one-letter value would blank out every word); the whole userinfo of a
URL always is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import unquote

REDACTED = "***"
"""What replaces a credential or a secret value inside a text."""

MASKED = "********"
"""What replaces the whole value of a secret-named variable in a listing."""

MIN_SECRET_LENGTH = 4
"""Shorter values (a password part, an environment value) are not searched for alone."""

_SECRET_NAME = re.compile(
    r"PASS|PWD|SECRET|TOKEN|KEY|CRED|AUTH|PRIVATE|CERT|SALT|COOKIE", re.IGNORECASE
)
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#'\"<>`]*@")
"""``scheme://userinfo@`` in a text; greedy, so the *last* ``@`` of the authority ends it."""
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_SCP_LIKE = re.compile(r"[^/\s]*@(?!sha256:)[^/\s]*:")


def is_secret_name(name: str) -> bool:
    """Whether the value of the variable ``name`` is a secret (see the module docstring)."""
    return bool(_SECRET_NAME.search(name))


def redact_urls(text: str) -> str:
    """``text`` with the userinfo of every ``scheme://user[:pw]@`` replaced by ``***``."""
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without any of ``secrets`` (case-insensitively) and without URL credentials."""
    literals = sorted({s for s in secrets if s}, key=len, reverse=True)
    if literals:
        pattern = re.compile("|".join(re.escape(s) for s in literals), re.IGNORECASE)
        text = pattern.sub(REDACTED, text)
    return redact_urls(text)


def _userinfo(url: str) -> tuple[str, str, str] | None:
    """``(prefix, userinfo, rest)`` of a URL as written, read leniently, or ``None``.

    With a scheme, the userinfo runs to the *last* ``@`` (a password may hold a raw
    ``/`` or ``@``); scp-like (``user@host:path``) it runs to the last ``@`` before the
    first ``/``.
    """
    scheme = _SCHEME.match(url)
    if scheme:
        rest = url[scheme.end() :]
        at = rest.rfind("@")
        if at < 0:
            return None
        return scheme.group(), rest[:at], rest[at + 1 :]
    head = url.split("/", 1)[0]
    at = head.rfind("@")
    if at < 0:
        return None
    return "", url[:at], url[at + 1 :]


def redact_url(url: str) -> str:
    """``url`` fit to show: its userinfo (if any) replaced by ``***``."""
    parts = _userinfo(url)
    if parts is None:
        return redact_urls(url)
    prefix, _userinfo_text, rest = parts
    return f"{prefix}{REDACTED}@{redact_urls(rest)}"


def url_secrets(url: str) -> frozenset[str]:
    """The literal credential strings of ``url`` (as written and percent-decoded).

    The whole userinfo always; its user and password parts when at least
    :data:`MIN_SECRET_LENGTH` long. Empty for a URL without userinfo.
    """
    parts = _userinfo(url)
    if parts is None or not parts[1]:
        return frozenset()
    userinfo = parts[1]
    found = {userinfo, unquote(userinfo)}
    for part in userinfo.split(":", 1):
        for form in (part, unquote(part)):
            if len(form) >= MIN_SECRET_LENGTH:
                found.add(form)
    return frozenset(found)


def text_secrets(words: Iterable[str]) -> frozenset[str]:
    """The credential strings of every URL among ``words`` (a command line, say).

    A word counts as a URL with a scheme (``git://u:p@h/x``, also as ``--repo=...``) or
    scp-like (``u@host:path``); an image digest (``repo@sha256:...``) does not.
    """
    found: set[str] = set()
    for word in words:
        value = word.partition("=")[2] if word.startswith("--") else word
        scheme = _SCHEME.search(value)
        if scheme:
            found |= url_secrets(value[scheme.start() :])
        elif _SCP_LIKE.match(value):
            found |= url_secrets(value)
    return frozenset(found)


def secret_values(environment: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The values of the secret-named variables among ``environment`` (long enough to find)."""
    return frozenset(
        value
        for name, value in environment
        if is_secret_name(name) and len(value) >= MIN_SECRET_LENGTH
    )


def mask_environment(environment: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``environment`` fit to show: secret-named values ``********``, URL credentials ``***``."""
    return [
        (name, MASKED if is_secret_name(name) else redact_urls(value))
        for name, value in environment
    ]


def redact_document(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A JSON-like ``value`` (dicts, lists, tuples) with every string in it passed through
    :func:`redact`; the shape is kept."""
    hidden = frozenset(secrets)
    if isinstance(value, str):
        return redact(value, hidden)
    if isinstance(value, Mapping):
        return {k: redact_document(v, hidden) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_document(v, hidden) for v in value)
    return value


def redact_log_event(
    _logger: object, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: URL credentials out of every field of every event."""
    for key, value in event.items():
        if isinstance(value, str | list | tuple | Mapping):
            event[key] = redact_document(value)
    return event
