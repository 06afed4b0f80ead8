"""The quiver command itself: shell completion."""

from __future__ import annotations

import os
import subprocess

from tests.graphql.servers import QUIVER


def complete(words: str) -> list[str]:
    env = {
        **os.environ,
        "_QUIVER_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - 1),
    }
    result = subprocess.run([QUIVER], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_shell_completion_completes_commands_and_options() -> None:
    assert complete("quiver se") == ["serve"]
    assert "--log-format" in complete("quiver serve --lo")


def test_help_offers_to_install_and_show_completion() -> None:
    result = subprocess.run(
        [QUIVER, "--help"], capture_output=True, text=True, timeout=60, env={**os.environ}
    )
    assert "--install-completion" in result.stdout
    assert "--show-completion" in result.stdout
