"""``autointerp demo``: collect -> explain -> score -> summary -> browser, on the embedded default.

- ``settings``: the demo's stage configurations (small enough for 2 CPU cores) and advanced overrides;
- ``choose``: which latents the demo explains, chosen deterministically from the collect;
- ``report``: the summary table, read back from the database;
- ``command``: the subcommand that runs it all.
"""
