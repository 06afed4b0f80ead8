"""A SQLite file whose writer was killed in the middle of a transaction is read as it was before
that transaction: read-only connections roll the transaction back first, or say how to."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from quiver.runtime.errors import ConfigError, PermanentError
from quiver.schema.reflect import reflect_database
from quiver.sql.connect import connect_sqlite
from quiver.sql.url import DatabaseUrl
from tests.graphql.servers import QUIVER

_WRITER = """\
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute('PRAGMA cache_size = 1')  # spill pages to the file: the journal is hot
c.execute('PRAGMA wal_autocheckpoint = 0')  # committed WAL frames stay uncheckpointed
c.execute("INSERT INTO authors (name) VALUES ('committed')")
c.execute('BEGIN IMMEDIATE')
c.execute("UPDATE authors SET name = 'half'")
c.execute('CREATE TABLE filler (b BLOB)')
c.executemany('INSERT INTO filler VALUES (?)', [(b'x' * 4000,)] * 500)
print('ready', flush=True)
time.sleep(60)
"""


def _crash_mid_write(path: Path, *, wal: bool) -> None:
    """A database with three committed rows, whose writer is killed mid-transaction."""
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    conn.execute("INSERT INTO authors (name) VALUES ('A'), ('B')")
    conn.close()
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE)
    assert writer.stdout is not None
    try:
        assert writer.stdout.readline() == b"ready\n"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
    left = path.with_name(path.name + ("-wal" if wal else "-journal"))
    assert left.is_file() and left.stat().st_size > 0


def _names(path: Path) -> list[str]:
    conn = connect_sqlite(DatabaseUrl("sqlite", str(path)), mode="ro")
    try:
        return [r[0] for r in conn.execute("SELECT name FROM authors ORDER BY id")]
    finally:
        conn.close()


@pytest.mark.parametrize("wal", [False, True], ids=["rollback-journal", "wal"])
async def test_reflection_after_a_writer_died_mid_transaction_sees_the_data_before_it(
    tmp_path: Path, wal: bool
) -> None:
    path = tmp_path / "crashed.db"
    _crash_mid_write(path, wal=wal)
    schema = await reflect_database(f"sqlite:///{path}")
    assert [e.name for e in schema.entities] == ["Author"]  # no half-created filler table
    assert _names(path) == ["A", "B", "committed"]
    assert not path.with_name(path.name + "-journal").exists()


@pytest.mark.parametrize("wal", [False, True], ids=["rollback-journal", "wal"])
def test_check_after_a_writer_died_mid_transaction_succeeds(tmp_path: Path, wal: bool) -> None:
    path = tmp_path / "crashed.db"
    _crash_mid_write(path, wal=wal)
    done = subprocess.run(
        [QUIVER, "check", "--db", f"sqlite:///{path}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Author (authors)" in done.stdout
    assert "Filler" not in done.stdout
    assert _names(path) == ["A", "B", "committed"]


@contextmanager
def _read_only(*paths: Path) -> Iterator[None]:
    """Make ``paths`` unwritable for this process: chmod for a user, the immutable attribute
    for root (whom permission bits do not stop)."""
    if os.geteuid() != 0:
        modes = [p.stat().st_mode for p in paths]
        for p in paths:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield
        finally:
            for p, mode in zip(paths, modes, strict=True):
                p.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("running as root, where chmod does not stop writes, and chattr is missing")
    done = subprocess.run([chattr, "+i", *map(str, paths)], capture_output=True, check=False)
    if done.returncode != 0:
        subprocess.run([chattr, "-i", *map(str, paths)], capture_output=True, check=False)
        pytest.skip(
            "running as root, where chmod does not stop writes, and the file system refuses "
            f"the immutable attribute: {done.stderr.decode().strip()}"
        )
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", *map(str, paths)], check=True)


async def test_an_unwritable_file_left_by_a_crashed_writer_fails_saying_how_to_recover(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "crashed.db"
    _crash_mid_write(path, wal=False)
    url = DatabaseUrl("sqlite", str(path))
    with _read_only(path, folder):
        with pytest.raises(PermanentError) as raised:
            connect_sqlite(url, mode="ro")
        text = str(raised.value)
        assert "died in the middle of a transaction" in text
        assert "'crashed.db-journal'" in text
        assert f"sqlite3 {path} 'pragma integrity_check'" in text
        with pytest.raises(ConfigError, match="died in the middle of a transaction"):
            await reflect_database(f"sqlite:///{path}")
    assert path.with_name("crashed.db-journal").is_file()  # nothing was rolled back
    assert _names(path) == ["A", "B", "committed"]  # once writable, a read-only open recovers
