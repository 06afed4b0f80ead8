"""auth.permissions in quiver.yaml: what ``quiver check`` refuses, each problem with its place."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from quiver.config.loader import load_settings
from quiver.runtime.errors import ConfigError
from tests.graphql.servers import QUIVER

KEY = "tenant-one-key-0123456789"


def _project(tmp_path: Path, permissions: str, keys: str = "") -> Path:
    db = tmp_path / "shop.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, tenant_id INT, name TEXT, secret TEXT)"
        )
    keys = keys or (f"    - {{name: one, key: {KEY}, role: tenant, claims: {{tenant_id: 1}}}}\n")
    (tmp_path / "quiver.yaml").write_text(
        f"database:\n  url: sqlite:///{db.absolute()}\n"
        "auth:\n  api_keys:\n" + keys + "  permissions:\n" + permissions
    )
    return tmp_path / "quiver.yaml"


def _check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [QUIVER, "check", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=config.parent,
        timeout=60,
    )


def test_a_valid_configuration_passes_check(tmp_path: Path) -> None:
    config = _project(
        tmp_path,
        "    tenant:\n"
        "      Customer:\n"
        "        select:\n"
        '          filter: {tenantId: {eq: "$claims.tenant_id"}}\n'
        "          columns: [id, name]\n",
    )
    done = _check(config)
    assert done.returncode == 0, done.stderr + done.stdout


def test_an_unknown_entity_is_named_with_its_line(tmp_path: Path) -> None:
    config = _project(tmp_path, "    tenant:\n      Custmer:\n        select: {}\n")
    done = _check(config)
    assert done.returncode != 0
    assert "quiver.yaml:9" in done.stderr and "no entity 'Custmer'" in done.stderr
    assert "Customer" in done.stderr  # the suggestion


def test_an_unknown_column_is_named_with_its_line(tmp_path: Path) -> None:
    config = _project(
        tmp_path, "    tenant:\n      Customer:\n        select: {columns: [id, nme]}\n"
    )
    done = _check(config)
    assert done.returncode != 0
    assert "quiver.yaml:9:32" in done.stderr and "no field 'nme'" in done.stderr


def test_a_filter_reading_a_claim_the_key_lacks_is_refused(tmp_path: Path) -> None:
    config = _project(
        tmp_path,
        '    tenant:\n      Customer:\n        select: {filter: {tenantId: {eq: "$claims.org"}}}\n',
    )
    done = _check(config)
    assert done.returncode != 0
    assert "no claim 'org'" in done.stderr and "quiver.yaml:5" in done.stderr


def test_a_filter_on_an_unknown_field_is_refused(tmp_path: Path) -> None:
    config = _project(
        tmp_path,
        "    tenant:\n      Customer:\n        select: {filter: {tenant: {eq: 1}}}\n",
    )
    done = _check(config)
    assert done.returncode != 0
    assert "auth.permissions.tenant.Customer.select.filter" in done.stderr
    assert "tenant" in done.stderr


def test_a_role_without_permissions_is_refused(tmp_path: Path) -> None:
    config = _project(
        tmp_path,
        "    admin: {}\n",
        f"    - {{name: one, key: {KEY}, role: tenant}}\n",
    )
    done = _check(config)
    assert done.returncode != 0
    assert "role 'tenant' has no entry" in done.stderr and "quiver.yaml:5" in done.stderr


def test_select_columns_must_keep_the_primary_key(tmp_path: Path) -> None:
    config = _project(tmp_path, "    tenant:\n      Customer:\n        select: {columns: [name]}\n")
    done = _check(config)
    assert done.returncode != 0 and "leaves out the primary key (id)" in done.stderr


def test_unknown_permission_keys_are_refused(tmp_path: Path) -> None:
    config = _project(tmp_path, "    tenant:\n      Customer:\n        select: {filters: {}}\n")
    with pytest.raises(ConfigError, match="filters"):
        load_settings(config)


def test_a_role_without_any_permissions_section_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "shop.sqlite"
    sqlite3.connect(db).execute("CREATE TABLE t (id INTEGER PRIMARY KEY)").connection.close()
    config = tmp_path / "quiver.yaml"
    config.write_text(
        f"database:\n  url: sqlite:///{db.absolute()}\n"
        f"auth:\n  api_keys:\n    - {{name: one, key: {KEY}, role: tenant}}\n"
    )
    done = _check(config)
    assert done.returncode != 0 and "auth.permissions is not set" in done.stderr


def test_permissions_without_keys_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "shop.sqlite"
    sqlite3.connect(db).execute("CREATE TABLE t (id INTEGER PRIMARY KEY)").connection.close()
    config = tmp_path / "quiver.yaml"
    config.write_text(
        f"database:\n  url: sqlite:///{db.absolute()}\nauth:\n  permissions:\n    tenant: {{}}\n"
    )
    done = _check(config)
    assert done.returncode != 0 and "auth.api_keys is empty" in done.stderr


def test_compile_checks_the_permissions_against_the_compiled_schema(tmp_path: Path) -> None:
    from tests.schema.subset import SUBSET_APP

    (tmp_path / "app.py").write_text(SUBSET_APP.format(db_schema=None))
    (tmp_path / "quiver.yaml").write_text(
        "auth:\n  api_keys:\n"
        f"    - {{name: one, key: {KEY}, role: fan}}\n"
        "  permissions:\n    fan:\n      Artist:\n        select: {columns: [artistId, nam]}\n"
    )
    done = subprocess.run(
        [QUIVER, "compile", "app.py", "-o", "schema.json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 1
    assert "quiver.yaml:7" in done.stderr and "Artist has no field 'nam'" in done.stderr
    assert not (tmp_path / "schema.json").exists()
