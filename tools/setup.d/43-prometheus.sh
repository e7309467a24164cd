# Debian's Prometheus, for the tests that need a real one: the real-node tier's canary and metrics
# tests (tests/e2e_node/monitoring.py: it scrapes kaip's real pods and the operator's canary gates
# read it, as on a cluster) and the local analysis-gate tests (tests/e2e_local/
# test_analysis_gates.py: it scrapes kaip up's gateway and a PromQL gate asks it). Only the binary
# is used: the package's own service is not started here (no systemd in our machines); each test
# runs its own Prometheus with its own configuration.
component prometheus "Prometheus (Debian) for the PromQL gate tests (local and real node)"
prometheus_ready() { dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q 'install ok installed'; }
prometheus_install() { apt_install prometheus; }
