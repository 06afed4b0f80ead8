"""Database URLs: ``postgresql://``, ``mysql://`` / ``mariadb://`` and ``sqlite:///``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from quiver.runtime.errors import ConfigError

__all__ = ["DatabaseUrl", "DialectName", "parse_database_url"]

DialectName = Literal["postgresql", "mysql", "sqlite"]

_SCHEMES: dict[str, DialectName] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed database URL. For SQLite only ``database`` (the file path) is set."""

    dialect: DialectName
    database: str
    host: str = ""
    port: int = 0
    user: str = ""
    password: str = ""
    options: tuple[tuple[str, str], ...] = ()

    def redacted(self) -> str:
        """The URL with the password hidden, for logs and error messages."""
        if self.dialect == "sqlite":
            return f"sqlite:///{self.database}"
        auth = f"{self.user}:***@" if self.password else (f"{self.user}@" if self.user else "")
        return f"{self.dialect}://{auth}{self.host}:{self.port}/{self.database}"


def parse_database_url(url: str) -> DatabaseUrl:
    """Parse ``url`` or raise a ConfigError that names the accepted forms."""
    fix = (
        "use postgresql://user:password@host:5432/db, mysql://user@host:3306/db "
        "or sqlite:///path/to/file.db"
    )
    parts = urlsplit(url)
    dialect = _SCHEMES.get(parts.scheme.split("+", 1)[0].lower())
    if dialect is None:
        raise ConfigError.one(
            f"unsupported database URL scheme {parts.scheme!r}", "database url", fix
        )
    if dialect == "sqlite":
        # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy spells them.
        path = unquote(url.split("://", 1)[1])[1:]
        if not path:
            raise ConfigError.one("the SQLite URL has no file path", "database url", fix)
        return DatabaseUrl("sqlite", path)
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise ConfigError.one(f"the URL {url!r} names no database", "database url", fix)
    try:
        port = parts.port or _DEFAULT_PORTS[dialect]
    except ValueError as exc:
        raise ConfigError.one(f"bad port in database URL: {exc}", "database url", fix) from None
    options = tuple((k, v[-1]) for k, v in parse_qs(parts.query).items())
    return DatabaseUrl(
        dialect=dialect,
        database=database,
        host=parts.hostname or "127.0.0.1",
        port=port,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        options=options,
    )
