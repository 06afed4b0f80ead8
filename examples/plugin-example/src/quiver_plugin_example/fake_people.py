"""The ``fake_people`` source: reproducible rows of invented people, for demos and tests."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pyarrow as pa
from pydantic import Field

from quiver.pipeline.component import LINE_COLUMN, ComponentConfig, RunContext, source

__all__ = ["FakePeopleConfig", "FakePeopleSource"]

_FIRST = ["ada", "grace", "alan", "edsger", "barbara", "ken", "linus", "margaret", "dennis"]
_LAST = ["lovelace", "hopper", "turing", "dijkstra", "liskov", "thompson", "hamilton"]
_DOMAINS = ["example.com", "example.org", "mail.example.net"]


class FakePeopleConfig(ComponentConfig):
    """How many people, and the seed that makes them the same every run."""

    rows: int = Field(1_000, ge=0, description="Number of rows.")
    seed: int = Field(1, description="Random seed: the same seed gives the same rows.")
    batch_rows: int = Field(10_000, ge=1, description="Rows per batch.")


@source("fake_people", config=FakePeopleConfig)
class FakePeopleSource:
    """Invented people: id, name, email, phone."""

    def __init__(self, cfg: FakePeopleConfig) -> None:
        self.cfg = cfg

    async def batches(self, ctx: RunContext) -> AsyncIterator[pa.RecordBatch]:
        rng = random.Random(self.cfg.seed)
        for start in range(0, self.cfg.rows, self.cfg.batch_rows):
            ids = range(start + 1, min(start + self.cfg.batch_rows, self.cfg.rows) + 1)
            names, emails, phones = [], [], []
            for _ in ids:
                first, last = rng.choice(_FIRST), rng.choice(_LAST)
                names.append(f"{first.title()} {last.title()}")
                emails.append(f"{first}.{last}@{rng.choice(_DOMAINS)}")
                phones.append(f"+1 555 {rng.randrange(1000):03d} {rng.randrange(10000):04d}")
            yield pa.record_batch(
                {
                    "id": pa.array(ids, pa.int64()),
                    "name": names,
                    "email": emails,
                    "phone": phones,
                    LINE_COLUMN: pa.array(ids, pa.int64()),
                }
            )
