"""Read Quiver's Arrow Flight server from Python: pyarrow, pandas and polars.

Start a server first (the demo serves the Chinook music store, Flight on port 8815):

    quiver demo

then run:

    python examples/flight/python_flight_client.py [grpc://127.0.0.1:8815] [API_KEY]
"""

from __future__ import annotations

import sys

import pyarrow.flight as flight

from quiver.flight import connect


def main(location: str = "grpc://127.0.0.1:8815", api_key: str | None = None) -> None:
    with connect(location, api_key=api_key) as client:
        # Every exportable table, with the schema its stream has.
        names = [
            info.descriptor.path[0].decode() for info in client.tables() if info.descriptor.path
        ]
        print(f"{len(names)} tables:", ", ".join(names))

        # A bulk export: long rock tracks, three columns, straight from the database.
        tracks = client.read("export:Track:milliseconds>300000&genreId=1:trackId,name,unitPrice")
        print(f"{tracks.num_rows} long rock tracks; schema: {tracks.schema}")

        # The same as JSON, with the GraphQL where input.
        artists = client.export(
            "Artist", where={"name": {"startsWith": "The "}}, columns=["artistId", "name"]
        )
        print(f"{artists.num_rows} artists named The ...")

        # A parallel read: four endpoints of disjoint key ranges, read at once into one table
        # (in no order across endpoints: sort it when order matters).
        info = client.info({"export": {"table": "InvoiceLine", "partitions": 4}})
        lines = client.read_info(info).sort_by("invoiceLineId")
        print(f"{lines.num_rows} invoice lines read over {len(info.endpoints)} endpoints")

        # A GraphQL query answered as Arrow: nested objects become structs.
        albums = client.graphql("{ albums(limit: 3) { title artist { name } } }")
        for row in albums.to_pylist():
            print(f"  {row['title']} by {row['artist']['name']}")

        # pandas: a stream read straight into a DataFrame.
        frame = client.reader("export:Invoice::invoiceId,billingCountry,total").read_pandas()
        by_country = frame.groupby("billingCountry")["total"].sum().sort_values().tail(3)
        print("top countries by sales:", ", ".join(by_country.index))

        # polars: from the Arrow table without a copy.
        import polars as pl

        genres = pl.from_arrow(client.read("export:Genre::genreId,name"))
        assert isinstance(genres, pl.DataFrame)
        print(f"{genres.height} genres, first: {genres['name'][0]}")

        # pyarrow's own client is there too, for the RPCs QuiverFlightClient does not wrap.
        schema = client.flight.get_schema(
            flight.FlightDescriptor.for_path("Album"), client.options
        ).schema
        print("Album columns:", ", ".join(schema.names))


if __name__ == "__main__":
    main(*sys.argv[1:3])
