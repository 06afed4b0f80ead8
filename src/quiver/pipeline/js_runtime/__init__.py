"""The JavaScript runtime of the ``js`` processor: V8 isolates, the driver prelude, workers.

``isolate`` runs a script over whole batches in one isolate; ``pool`` spreads slices of a
batch over worker processes (``worker``); ``codec`` moves batches in and out as columnar JSON;
``syntax`` checks a script for ``quiver validate``; ``v8`` starts V8 once per process with
the flags every isolate relies on.
"""
