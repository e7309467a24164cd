# The catalog export test (tests/unit/test_catalog_export.py): Backstage's own validator,
# @backstage/catalog-model, run with Node; the version is pinned by tools/backstage/package-lock.json
# (npm ci installs exactly it, install scripts off).
component backstage "Node and @backstage/catalog-model (pinned) to validate kaip catalog export"
backstage_ready() {
    command -v node >/dev/null && command -v npm >/dev/null || return 1
    local dir="$ROOT/tools/backstage"
    [[ -f "$dir/node_modules/@backstage/catalog-model/package.json" ]] &&
        [[ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]]
}
backstage_install() {
    command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
    (cd "$ROOT/tools/backstage" && npm ci --ignore-scripts --no-audit --no-fund)
}
