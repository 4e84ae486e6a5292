"""Query: the `autointerp sql` command and the Python API (`open_db`) over a database's views."""
