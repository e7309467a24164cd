# The custom-metrics API for the real-node tier's autoscaling test (tests/e2e_node/monitoring.py):
# prometheus-adapter, built by tools/prometheus-adapter/build.sh from the Go module proxy in a
# wrapper module aligned with the control plane's, so after 30-k8s.sh only its own packages compile.
component adapter "prometheus-adapter (custom.metrics.k8s.io for kaip's HPAs), built by tools/prometheus-adapter/build.sh" kube
adapter_ready() { tools/prometheus-adapter/build.sh --check >/dev/null; }
adapter_note() { echo "building prometheus-adapter from the Go module proxy (~4 min on 2 cores once the control plane is built)"; }
adapter_install() { apt_install patch && need_go 25 && tools/prometheus-adapter/build.sh >/dev/null; }
