#!/usr/bin/env bash
# Refresh the vendored Compose Specification JSON schema (compose-spec.json) used by tests/unit/test_compose.py.
#
# The schema is the one `docker compose` itself validates with: it is embedded in the Go module
# github.com/compose-spec/compose-go/v2 (file schema/compose-spec.json), the loader Docker Compose v2 uses.
# We fetch that module through the Go module proxy, which checks it against the Go checksum database
# (sum.golang.org), copy the schema here, and record where it came from in compose-spec.source.
#
# usage: deploy/docker/refresh-compose-spec.sh [VERSION]    (default: latest; e.g. v2.16.2)
# needs: go (any recent version), network access to the Go module proxy. Tests never need network.
set -euo pipefail
cd "$(dirname "$0")"

module=github.com/compose-spec/compose-go/v2
version=${1:-latest}
command -v go >/dev/null 2>&1 || { echo "refresh-compose-spec: go is required" >&2; exit 1; }

info=$(go mod download -json "$module@$version")
dir=$(printf '%s' "$info" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
resolved=$(printf '%s' "$info" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Version"])')
modsum=$(printf '%s' "$info" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Sum"])')

install -m 0644 "$dir/schema/compose-spec.json" compose-spec.json
digest=$(sha256sum compose-spec.json | cut -d' ' -f1)
cat > compose-spec.source <<SOURCE
# Provenance of compose-spec.json; written by refresh-compose-spec.sh, checked by tests/unit/test_compose.py.
module=$module
version=$resolved
path=schema/compose-spec.json
go_sum=$modsum
sha256=$digest
SOURCE
echo "compose-spec.json <- $module@$resolved/schema/compose-spec.json (sha256 $digest)"
