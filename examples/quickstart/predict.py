"""Ask the quickstart's digits model for a prediction through the kaip gateway, then show how.

Usage: python predict.py [GATEWAY_URL]   (default http://127.0.0.1:$KAIP_LOCAL__GATEWAY_PORT,
port 8080). Standard library only; this file is also the Python snippet ``make demo`` prints.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request

PORT = os.environ.get("KAIP_LOCAL__GATEWAY_PORT", "8080")
GATEWAY = sys.argv[1] if len(sys.argv) > 1 else f"http://127.0.0.1:{PORT}"
# An 8x8 image of a handwritten zero (sklearn's load_digits()[0]), row by row.
ZERO = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4,
        12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10,
        12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]  # fmt: skip
BODY = {"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP32", "data": ZERO}]}


def predict(gateway: str = GATEWAY) -> object:
    request = urllib.request.Request(
        f"{gateway}/v2/models/digits/infer",
        data=json.dumps(BODY).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.load(response)
    return answer["outputs"][0]["data"][0]


def main() -> None:
    digit = predict()
    print(f"\nThe digits model, served by kaip at {GATEWAY}, reads the image of a zero as: {digit}")
    data = json.dumps(BODY, separators=(",", ":"))
    print(
        f"""
Call it yourself:

  curl -s {GATEWAY}/v2/models/digits/infer -H 'Content-Type: application/json' \\
    -d '{data}'

  python - <<'PY'
  import httpx
  body = {{"inputs": [{{"name": "input-0", "shape": [1, 64], "datatype": "FP32",
                      "data": {ZERO}}}]}}
  print(httpx.post("{GATEWAY}/v2/models/digits/infer", json=body).json()["outputs"])
  PY

The web app that calls the model: {GATEWAY}/apps/digits-ui/
See what runs: .venv/bin/kaip status   Logs: .venv/bin/kaip logs digits -f
Roll out a change: edit examples/quickstart/kaip.yaml, .venv/bin/kaip deploy examples/quickstart
Stop everything: .venv/bin/kaip down"""
    )


if __name__ == "__main__":
    main()
