"""The DuckDB store: schema migrations, runs, writers."""
