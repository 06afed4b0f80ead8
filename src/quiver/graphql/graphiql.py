"""The GraphiQL page served on ``GET /graphql`` to browsers (assets from a CDN)."""

from __future__ import annotations

__all__ = ["graphiql_page"]

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Quiver GraphiQL</title>
<style>body {{ margin: 0; height: 100vh; }} #graphiql {{ height: 100vh; }}</style>
<link rel="stylesheet" href="https://unpkg.com/graphiql@3.8.3/graphiql.min.css">
<link rel="stylesheet" href="https://unpkg.com/@graphiql/plugin-explorer@3.2.5/dist/style.css">
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script crossorigin src="https://unpkg.com/react@18.3.1/umd/react.production.min.js"></script>
<script crossorigin src="https://unpkg.com/react-dom@18.3.1/umd/react-dom.production.min.js"></script>
<script crossorigin src="https://unpkg.com/graphiql@3.8.3/graphiql.min.js"></script>
<script crossorigin
  src="https://unpkg.com/@graphiql/plugin-explorer@3.2.5/dist/index.umd.js"></script>
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


def graphiql_page(endpoint: str, default_query: str = DEFAULT_QUERY) -> bytes:
    """The HTML page; ``endpoint`` is the GraphQL path the page sends its queries to."""
    as_js = _js_string(endpoint)
    return _PAGE.format(endpoint=as_js, default_query=_js_string(default_query)).encode()


def _js_string(text: str) -> str:
    """A JavaScript string literal that is also safe inside an HTML <script> element."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    escaped = escaped.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return '"' + escaped + '"'
