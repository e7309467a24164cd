"""``python oip_infer.py HOST:PORT MODEL < rows.json``: predict with Triton's own client.

Run inside the node's network namespace (``RealCluster.in_node``) so that a Service's ClusterIP
is reachable through kube-proxy. Reads a JSON list of rows (FP32 features), sends them as one
Open Inference Protocol v2 request with ``tritonclient.http`` (binary tensors) and prints the
first output as a JSON list.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.http as httpclient


def main() -> None:
    url, model = sys.argv[1], sys.argv[2]
    rows = np.asarray(json.load(sys.stdin), dtype=np.float32)
    client = httpclient.InferenceServerClient(url=url, connection_timeout=10, network_timeout=30)
    if not client.is_model_ready(model):
        sys.exit(f"model {model} at {url} is not ready")
    tensor = httpclient.InferInput("input-0", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=True)
    result = client.infer(model, [tensor])
    name = result.get_response()["outputs"][0]["name"]
    print(json.dumps(result.as_numpy(name).tolist()))


if __name__ == "__main__":
    main()
