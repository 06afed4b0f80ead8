#!/bin/sh
# Refreshes the GraphiQL page's assets in src/quiver/graphql/static/ from the npm registry.
# Change the versions here (and GRAPHIQL_PACKAGES in src/quiver/graphql/graphiql.py), then run:
#   sh scripts/vendor_graphiql.sh
set -eu
REACT=18.3.1
GRAPHIQL=3.8.3
EXPLORER=3.2.5
GRAPHQL=16.9.0   # bundled inside graphiql.min.js; the version graphiql was built with
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/src/quiver/graphql/static"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm pack --silent "react@$REACT" "react-dom@$REACT" "graphiql@$GRAPHIQL" \
  "@graphiql/plugin-explorer@$EXPLORER" "graphql@$GRAPHQL" >/dev/null
unpack() { mkdir -p "$2" && tar xzf "$1" -C "$2" --strip-components=1; }
unpack "react-$REACT.tgz" react
unpack "react-dom-$REACT.tgz" react-dom
unpack "graphiql-$GRAPHIQL.tgz" graphiql
unpack "graphiql-plugin-explorer-$EXPLORER.tgz" explorer
unpack "graphql-$GRAPHQL.tgz" graphql
rm -rf "$dest"
mkdir -p "$dest/react-$REACT" "$dest/react-dom-$REACT" "$dest/graphiql-$GRAPHIQL" \
  "$dest/graphiql-plugin-explorer-$EXPLORER" "$dest/graphql-$GRAPHQL"
cp react/umd/react.production.min.js react/LICENSE "$dest/react-$REACT/"
cp react-dom/umd/react-dom.production.min.js react-dom/LICENSE "$dest/react-dom-$REACT/"
cp graphiql/graphiql.min.js graphiql/graphiql.min.css graphiql/LICENSE "$dest/graphiql-$GRAPHIQL/"
cp explorer/dist/index.umd.js explorer/dist/style.css "$dest/graphiql-plugin-explorer-$EXPLORER/"
# The explorer's npm package carries no LICENSE file; it is MIT (its package.json) and comes from
# the same repository as graphiql, whose LICENSE covers it.
cp graphiql/LICENSE "$dest/graphiql-plugin-explorer-$EXPLORER/LICENSE"
cp graphql/LICENSE "$dest/graphql-$GRAPHQL/LICENSE"
echo "assets written to $dest"
