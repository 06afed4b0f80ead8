"""``python -m quiver``: the ``quiver`` command, for environments without its console script."""

from quiver.cli import script

if __name__ == "__main__":
    script()
