"""Train the quickstart's digits classifier and write model.joblib next to this file.

Usage: python train.py [OUTPUT]
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import joblib
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("model.joblib")
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=2000))])
    model.fit(x_train, y_train)
    joblib.dump(model, out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"wrote {out} (test accuracy {model.score(x_test, y_test):.3f}, sha256 {digest})")


if __name__ == "__main__":
    main()
