"""An example Quiver plugin: a ``mask`` processor, a ``fake_people`` source, a ``discard`` sink.

Nothing here registers itself on import: Quiver reads the entry points declared in this
package's ``pyproject.toml`` and imports a module only when a pipeline uses its component.
"""

__all__: list[str] = []
