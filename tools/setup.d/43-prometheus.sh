# The real-node tier's metrics (tests/e2e_node/monitoring.py): Debian's Prometheus scrapes kaip's
# real pods, and the operator's canary gates read it, as on a cluster. Only the binary is used:
# the package's own service is not started here (no systemd in our machines) and the tier runs
# its own Prometheus with its own configuration in the node's network.
component prometheus "Prometheus (Debian) for the real-node tier's canary and metrics tests" kube
prometheus_ready() { dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q 'install ok installed'; }
prometheus_install() { apt_install prometheus; }
