"""A music catalogue API authored in Python over the Chinook tables.

    sqlite3 chinook.db < chinook_subset.sql
    quiver compile app.py -o schema.json --check-db sqlite:///chinook.db
    quiver schema print --schema schema.json

The classes name the GraphQL types and fields; ``source`` and ``column`` name what the
database calls them. Columns that only join (``ArtistId`` on Album) are declared hidden: the
relation uses them, the API does not show them.
"""

from __future__ import annotations

from decimal import Decimal

import quiver


@quiver.type(source="Artist", key="ArtistId")
class Artist:
    """A recording artist."""

    id: int = quiver.field(column="ArtistId")
    name: str | None = quiver.field(column="Name")
    albums: list[Album] = quiver.relation(fk="ArtistId", description="Albums, oldest first.")


@quiver.type(source="Album")  # key: the field named "id" (column AlbumId)
class Album:
    """An album of one artist."""

    id: int = quiver.field(column="AlbumId")
    title: str = quiver.field(column="Title")
    artist_id: int = quiver.field(column="ArtistId", hidden=True)
    artist: Artist = quiver.relation(fk="ArtistId")
    tracks: list[Track] = quiver.relation(fk="AlbumId")


@quiver.type(source="Genre")
class Genre:
    """A musical genre."""

    id: int = quiver.field(column="GenreId")
    name: str | None = quiver.field(column="Name")


@quiver.type(source="Track")
class Track:
    """One track of an album."""

    id: int = quiver.field(column="TrackId")
    name: str = quiver.field(column="Name")
    composer: str | None = quiver.field(column="Composer")
    duration_ms: int = quiver.field(column="Milliseconds", description="Length in milliseconds.")
    unit_price: Decimal = quiver.field(column="UnitPrice")
    album_id: int | None = quiver.field(column="AlbumId", hidden=True)
    genre_id: int | None = quiver.field(column="GenreId", hidden=True)
    album: Album | None = quiver.relation(fk="AlbumId")
    genre: Genre | None = quiver.relation(fk="GenreId")


@quiver.query(connection=True, aggregate=True)
def tracks(
    where: quiver.Where[Track] | None = None,
    order_by: list[quiver.OrderBy[Track]] | None = None,
    limit: int | None = None,
    offset: int | None = None,
) -> list[Track]:
    """Tracks of the catalogue; page with limit/offset or with tracksConnection."""
    ...


@quiver.query
def track(id: int) -> Track | None:
    """One track by its id."""
    ...


@quiver.query
def artists(where: quiver.Where[Artist] | None = None, limit: int | None = None) -> list[Artist]:
    """Artists; their albums and tracks are reached through relations."""
    ...


@quiver.query
def artist(id: int) -> Artist | None:
    """One artist by id."""
    ...
