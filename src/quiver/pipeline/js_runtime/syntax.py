"""Check a JavaScript step without running it over data: syntax, top-level code, entry function."""

from __future__ import annotations

from quiver.pipeline.js_runtime.isolate import Isolate, IsolateOptions, ScriptLoadError
from quiver.pipeline.js_runtime.v8 import V8StartError
from quiver.runtime.errors import ErrorDetail

__all__ = ["check_script"]


def check_script(options: IsolateOptions) -> list[ErrorDetail]:
    """Every problem found loading the script: syntax, top-level exception, entry function.

    The script is compiled exactly as a run compiles it, so a position is the one a run would
    report. V8 compiles the whole script before running any of it: a script with a syntax
    error runs nothing; otherwise its top-level code runs once (under the step's time and heap
    limits) in a fresh isolate that is then thrown away.
    """
    try:
        Isolate(options).close()
    except ScriptLoadError as exc:
        if exc.message.startswith("SyntaxError"):
            fix = "fix the JavaScript syntax at this position"
        elif exc.message.startswith("the script"):
            fix = (
                "define `function process(context)` (FlowEngine style) or "
                "`function transform(row, ctx)`"
            )
        else:
            fix = "fix the script's top-level code"
        return [ErrorDetail(exc.message, exc.where or options.script_name, fix)]
    except V8StartError as exc:
        fix = "call quiver.pipeline.js_runtime.v8.start_v8() before other code uses mini-racer"
        return [ErrorDetail(str(exc), options.script_name, fix)]
    return []
