"""Check a JavaScript step without running it over data: syntax, top-level code, entry function."""

from __future__ import annotations

import json

from quiver.pipeline.js_runtime.isolate import (
    Isolate,
    IsolateOptions,
    ScriptLoadError,
    locate_js_error,
)
from quiver.runtime.errors import ErrorDetail

__all__ = ["check_script"]

#: ``new Function(body)`` puts two wrapper lines before the body.
_FUNCTION_WRAPPER_LINES = 2


def syntax_error(source: str, script_name: str) -> ErrorDetail | None:
    """The first syntax error of ``source`` with ``file:line:column``, parsing only."""
    from py_mini_racer import JSEvalException, MiniRacer

    ctx = MiniRacer()
    try:
        ctx.eval(f"new Function({json.dumps(source)}); null")
    except JSEvalException as exc:
        message, where = locate_js_error(str(exc), script_name, _FUNCTION_WRAPPER_LINES)
        return ErrorDetail(message, where, "fix the JavaScript syntax at this position")
    finally:
        ctx.close()
    return None


def check_script(options: IsolateOptions) -> list[ErrorDetail]:
    """Every problem found loading the script: syntax, top-level exception, entry function."""
    found = syntax_error(options.source, options.script_name)
    if found is not None:
        return [found]
    try:
        Isolate(options).close()
    except ScriptLoadError as exc:
        fix = (
            "define `function process(context)` (FlowEngine style) or "
            "`function transform(row, ctx)`"
            if exc.message.startswith("the script")
            else "fix the script's top-level code"
        )
        return [ErrorDetail(exc.message, exc.where or options.script_name, fix)]
    return []
