"""The feature browser: a latent list and a page per latent, served over HTTP or written as a static site.

- ``listing``: the latent list as SQL (paging, sorting, filtering and search run in DuckDB, since an SAE
  can have a million latents);
- ``latent``: everything one latent's page shows, read in batches;
- ``render``: the HTML, with every piece of corpus or model text escaped;
- ``server``: ``autointerp browse --db PATH``, a stdlib HTTP server and a JSON API;
- ``static``: ``autointerp browse --static DIR``, a site that works from ``file://``;
- ``command``: the CLI subcommand.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"make_server": "autointerp.browse.server", "write_static": "autointerp.browse.static"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    # Lazy, so that `autointerp --help` and the other subcommands do not import the server.
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'autointerp.browse' has no attribute {name!r}")
