# helm, built from the Go module proxy (tools/helm/build.sh): the chart tests render charts/kaip.
component helm "helm, built by tools/helm/build.sh, for the chart tests"
helm_ready() { tools/helm/build.sh --check >/dev/null; }
helm_note() { echo "building helm from the Go module proxy (a few minutes on 2 cores when cold)"; }
helm_install() { need_go 24 && tools/helm/build.sh; }
