#!/usr/bin/env bash
# Ray Serve peer: a one-node Ray cluster on 127.0.0.1 (no dashboard, one CPU, no usage stats),
# then `serve run` of config.yaml against it. Usage: run.sh VENV GCS_PORT CONFIG.yaml TEMP_DIR
# Both processes stay in this script's session, so the harness measures and ends them together.
set -euo pipefail
venv="$1" gcs_port="$2" config="$3" temp_dir="$4"
export RAY_USAGE_STATS_ENABLED=0
"$venv/bin/ray" start --head --block --node-ip-address=127.0.0.1 --port="$gcs_port" \
  --include-dashboard=false --dashboard-host=127.0.0.1 --num-cpus=1 --disable-usage-stats --temp-dir="$temp_dir" &
for _ in $(seq 1 600); do
  (exec 3<>"/dev/tcp/127.0.0.1/$gcs_port") 2>/dev/null && break
  sleep 0.1
done
exec "$venv/bin/serve" run --address="127.0.0.1:$gcs_port" "$config"
