"""docs/configuration.md is generated from the settings models and must be up to date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from quiver.config.settings import QuiverSettings

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_configuration_page_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_config_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for section, field in QuiverSettings.model_fields.items():
        model = field.annotation
        fields = getattr(model, "model_fields", None)
        if fields is None:
            assert f"`{section}`" in text
            continue
        for key, inner in fields.items():
            assert f"`{section}.{key}`" in text, f"{section}.{key} is missing"
            for deeper in getattr(inner.annotation, "model_fields", {}):
                name = f"{section}.{key}.{deeper}"
                assert f"`{name}`" in text, f"{name} is missing"
