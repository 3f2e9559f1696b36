"""The Git source adapter: the only package that runs git.

- :mod:`reconciler.source.gitcmd` runs one git command safely (timeouts, no prompts,
  git's stderr redacted by :mod:`reconciler.redaction`);
- :mod:`reconciler.source.fetch` turns ``--repo`` (a path or a Git URL) into a
  read-only checkout of one revision;
- :mod:`reconciler.source.checkouts` materializes one commit's files read-only in the
  cache (signed and pinned revisions are always read from there);
- :mod:`reconciler.source.verify` checks signatures and ancestry before a checkout.
- :mod:`reconciler.source.bundle` creates and imports signed offline bundles;
  :mod:`reconciler.source.bundletar` reads their tar within the limits first.
"""

from reconciler.source.checkouts import prune_checkouts
from reconciler.source.fetch import (
    Checkout,
    cache_key,
    is_url,
    open_source,
    remote_head,
)
from reconciler.source.verify import Guard, Signer, check_forward, verify_commit

__all__ = [
    "Checkout",
    "Guard",
    "Signer",
    "cache_key",
    "check_forward",
    "is_url",
    "open_source",
    "prune_checkouts",
    "remote_head",
    "verify_commit",
]
