"""Demo data: the Chinook music store in SQLite, PostgreSQL and MariaDB (see docs/demo-data.md)."""
