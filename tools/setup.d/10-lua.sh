# A Lua interpreter: tests/unit/test_argocd_health.py runs the chart's Argo CD health check
# (charts/kaip/argocd/health.lua) in it. Argo CD embeds Lua 5.1 semantics; any of these will do.
component lua "a Lua interpreter (Debian lua5.4) for the Argo CD health check tests"
lua_ready() { command -v lua5.1 || command -v luajit || command -v lua5.4 || command -v lua; } >/dev/null
lua_install() { apt_install lua5.4; }
