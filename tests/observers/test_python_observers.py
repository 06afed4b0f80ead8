"""``@quiver.observer`` functions run on committed changes, checked like quiver.yaml's."""

from __future__ import annotations

from pathlib import Path

import pytest

from quiver.observers.authoring import declared_in
from quiver.observers.catalog import ObserverConfigError
from quiver.observers.service import open_dispatcher
from quiver.runtime.errors import ConfigError
from tests.observers.conftest import Shop

pytestmark = pytest.mark.asyncio(loop_scope="session")

APP = """
import quiver

seen = []

@quiver.observer(entity="Author", on=["insert"], when="{when}")
async def welcome(event):
    seen.append((event["after"]["name"], event["idempotency_key"]))
"""


async def test_a_python_observer_receives_matching_events(shop: Shop, tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP.format(when="country == 'NZ'"))
    declared = declared_in(app)
    dispatcher = await open_dispatcher(shop.settings([]), declared)
    try:
        await shop.mutate(
            'mutation { createAuthors(inputs: [{name: "A", email: "a@x"},'
            ' {name: "B", email: "b@x", country: "AU"}]) { id } }'
        )
        await dispatcher.run_once()
        seen = declared[0].fn.__globals__["seen"]
        assert [name for name, _ in seen] == ["A"]
        assert seen[0][1].endswith(":welcome:call")
    finally:
        await dispatcher.close()


async def test_a_python_observer_with_an_unknown_field_is_rejected(
    shop: Shop, tmp_path: Path
) -> None:
    if shop.dialect != "sqlite":
        pytest.skip("checked before the database is used")
    app = tmp_path / "app.py"
    app.write_text(APP.format(when="colour == 'red'"))
    with pytest.raises(ObserverConfigError) as caught:
        await open_dispatcher(shop.settings([]), declared_in(app))
    [detail] = caught.value.details
    assert detail.where.startswith(f"{app}:6 (@quiver.observer welcome).when")
    assert "Author has no field 'colour'" in detail.message


async def test_a_sync_function_is_refused() -> None:
    import quiver

    with pytest.raises(ConfigError, match="not an async function"):

        @quiver.observer(entity="Author")
        def nope(event: object) -> None:
            del event
