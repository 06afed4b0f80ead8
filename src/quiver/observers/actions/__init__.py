"""Observer actions, one per module; :mod:`.builtins` lists them."""
