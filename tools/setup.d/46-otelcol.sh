# A real OpenTelemetry Collector (otlp receiver, file exporter), built by tools/otelcol/build.sh
# from the Go module proxy: the e2e trace test (tests/e2e_local/test_observability.py) sends kaip
# up's spans to it and reads the traces it writes.
component otelcol "an OpenTelemetry Collector (otlp receiver, file exporter), built by tools/otelcol/build.sh"
otelcol_ready() { tools/otelcol/build.sh --check >/dev/null; }
otelcol_note() { echo "building a minimal OpenTelemetry Collector from the Go module proxy (~4 CPU-minutes when cold, less after the control plane: they share grpc, protobuf, golang.org/x)"; }
otelcol_install() { need_go 26 && tools/otelcol/build.sh >/dev/null; }
