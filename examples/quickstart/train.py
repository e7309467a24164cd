"""Train the quickstart's digits classifier and write model.joblib next to this file.

Usage: python train.py [OUTPUT]

Also a kaip TrainingJob (examples/training/): it writes where ``KAIP_OUTPUT_URI`` says, takes
its regularisation strength from ``C`` and reports it and the test accuracy with
``kaip.training.param`` / ``metric``, which kaip records with the version it registers. The
helper prints the ``KAIP_PARAM`` / ``KAIP_METRIC`` lines ``kaip up`` reads and, in a pod the
operator runs, also writes them to ``KAIP_REPORT_FILE`` (the container's termination message),
the only place the operator reads them.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import joblib
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from kaip import training


def main() -> None:
    default = os.environ.get("KAIP_OUTPUT_URI") or Path(__file__).with_name("model.joblib")
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(default)
    c = float(os.environ.get("C", "1.0"))
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=c, max_iter=2000))])
    model.fit(x_train, y_train)
    out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    accuracy = model.score(x_test, y_test)
    training.param("C", c)
    training.metric("accuracy", accuracy)
    print(f"wrote {out} (test accuracy {accuracy:.3f}, sha256 {digest})")


if __name__ == "__main__":
    main()
