"""The GraphiQL page served on ``GET /graphql`` to browsers, with its assets shipped in the package.

React, GraphiQL (which bundles graphql-js) and the explorer plugin come from the npm registry
(``scripts/vendor_graphiql.sh``) and live in ``static/<package>-<version>/`` beside their licences.
They are served under ``<graphql.path>/static/<package>-<version>/<file>``: a URL names one
version, so the answer never changes and carries ``Cache-Control: immutable``. The page refers
to them and to the endpoint by relative URLs, so it also works behind a path prefix.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = [
    "ASSET_CACHE_CONTROL",
    "STATIC_SEGMENT",
    "Asset",
    "asset_names",
    "graphiql_asset",
    "graphiql_page",
    "static_prefix",
]

STATIC_SEGMENT = "static"
ASSET_CACHE_CONTROL = b"public, max-age=31536000, immutable"

# <package>-<version>/<file> -> content type. Only these are served.
_ASSETS = {
    "react-18.3.1/react.production.min.js": "text/javascript; charset=utf-8",
    "react-dom-18.3.1/react-dom.production.min.js": "text/javascript; charset=utf-8",
    "graphiql-3.8.3/graphiql.min.js": "text/javascript; charset=utf-8",
    "graphiql-3.8.3/graphiql.min.css": "text/css; charset=utf-8",
    "graphiql-plugin-explorer-3.2.5/index.umd.js": "text/javascript; charset=utf-8",
    "graphiql-plugin-explorer-3.2.5/style.css": "text/css; charset=utf-8",
}
# The licences, served too so that the page can link them.
_LICENSES = (
    "react-18.3.1/LICENSE",
    "react-dom-18.3.1/LICENSE",
    "graphiql-3.8.3/LICENSE",
    "graphiql-plugin-explorer-3.2.5/LICENSE",
    "graphql-16.9.0/LICENSE",
)
for _license in _LICENSES:
    _ASSETS[_license] = "text/plain; charset=utf-8"

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Quiver GraphiQL</title>
<style>body {{ margin: 0; height: 100vh; }} #graphiql {{ height: 100vh; }}</style>
<link rel="stylesheet" href="{static}/graphiql-3.8.3/graphiql.min.css">
<link rel="stylesheet" href="{static}/graphiql-plugin-explorer-3.2.5/style.css">
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script src="{static}/react-18.3.1/react.production.min.js"></script>
<script src="{static}/react-dom-18.3.1/react-dom.production.min.js"></script>
<script src="{static}/graphiql-3.8.3/graphiql.min.js"></script>
<script src="{static}/graphiql-plugin-explorer-3.2.5/index.umd.js"></script>
<script>
  const fetcher = GraphiQL.createFetcher({{
    url: new URL({endpoint}, window.location.href).toString(),
    headers: {{ accept: "application/graphql-response+json, application/json" }},
  }});
  const explorer = GraphiQLPluginExplorer.explorerPlugin();
  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {{
      fetcher,
      plugins: [explorer],
      defaultQuery: {default_query},
      defaultEditorToolsVisibility: true,
    }})
  );
</script>
</body>
</html>
"""

DEFAULT_QUERY = """# Welcome to Quiver. Press the run button (or Ctrl-Enter) to run a query.
# The Explorer and Docs panels list every type and field of this API.
{
  __typename
}
"""


@dataclass(frozen=True)
class Asset:
    """One static file: its bytes, their gzip form and its content type."""

    body: bytes
    gzipped: bytes
    content_type: bytes


def graphiql_page(endpoint: str, default_query: str = DEFAULT_QUERY) -> bytes:
    """The HTML page served at ``endpoint`` (the GraphQL path); its URLs are relative to it."""
    last = endpoint.rsplit("/", 1)[-1]
    here = f"./{last}" if last else "./"
    static = f"{here}/{STATIC_SEGMENT}" if last else f"./{STATIC_SEGMENT}"
    return _PAGE.format(
        static=_html_attr(static),
        endpoint=_js_string(here),
        default_query=_js_string(default_query),
    ).encode()


def static_prefix(endpoint: str) -> str:
    """The path under which the assets of the page at ``endpoint`` are served (ends with '/')."""
    return f"{endpoint.rstrip('/')}/{STATIC_SEGMENT}/"


def graphiql_asset(name: str) -> Asset | None:
    """The asset ``<package>-<version>/<file>``, or None when no such asset is shipped."""
    if name not in _ASSETS:
        return None
    return _load(name)


@cache
def _load(name: str) -> Asset:
    body = resources.files("quiver.graphql").joinpath(STATIC_SEGMENT, *name.split("/")).read_bytes()
    return Asset(body, gzip.compress(body, 9, mtime=0), _ASSETS[name].encode())


def asset_names() -> list[str]:
    """Every file the page may ask for, licences included."""
    return list(_ASSETS)


def _html_attr(text: str) -> str:
    escaped = text.replace("&", "&amp;").replace('"', "&quot;")
    return escaped.replace("<", "&lt;").replace(">", "&gt;")


def _js_string(text: str) -> str:
    """A JavaScript string literal that is also safe inside an HTML <script> element."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    escaped = escaped.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return '"' + escaped + '"'
