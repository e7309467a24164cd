"""A training loop that checkpoints every epoch and resumes from the newest checkpoint.

Trains the digits classifier with SGD, one ``partial_fit`` pass per epoch, and after each epoch
writes ``epoch-N.joblib`` into ``KAIP_CHECKPOINT_DIR`` (atomically: a hidden temporary file,
then a rename). On a retry kaip sets ``KAIP_RESUME_FROM`` to the newest checkpoint this run
wrote; the loop loads it and goes on from the next epoch, so a job killed mid-run loses at most
one epoch. ``EPOCHS`` (default 20) and ``EPOCH_SECONDS`` (a pause per epoch, default 0) shape
the run; ``HOLD_AT_EPOCH=N`` makes a first attempt (one not resuming) stop after checkpointing
epoch N and wait there until it is killed: a demo of kill and resume that does not race.
Progress, the parameter and the final accuracy are reported with :mod:`kaip.training`, which
prints the lines ``kaip up`` reads and, under the operator, keeps the metrics in
``KAIP_REPORT_FILE`` (the pod's termination message).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from kaip import training


def main() -> None:
    epochs = int(os.environ.get("EPOCHS", "20"))
    pause = float(os.environ.get("EPOCH_SECONDS", "0"))
    hold_at = int(os.environ.get("HOLD_AT_EPOCH", "0"))
    checkpoints = Path(training.checkpoint_dir() or "checkpoints")
    checkpoints.mkdir(parents=True, exist_ok=True)
    out = Path(training.output_path(default="digits-sgd.joblib"))
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    classes = np.unique(y)
    model = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=0)
    start = 0
    resume = training.resume_from()
    if resume:
        state = joblib.load(resume)
        model, start = state["model"], state["epoch"]
        print(f"resumed from checkpoint step {start} ({resume})", flush=True)
    training.param("alpha", model.alpha)
    for epoch in range(start + 1, epochs + 1):
        model.partial_fit(x_train, y_train, classes=classes)
        tmp = checkpoints / f".epoch-{epoch}.tmp"
        joblib.dump({"model": model, "epoch": epoch}, tmp)
        tmp.replace(checkpoints / f"epoch-{epoch}.joblib")
        print(f"epoch {epoch}/{epochs} checkpointed", flush=True)
        training.progress(epoch / epochs)
        if epoch == hold_at and not resume:
            print(f"holding at epoch {epoch} until killed", flush=True)
            while True:
                time.sleep(3600)
        time.sleep(pause)
    accuracy = model.score(x_test, y_test)
    training.metric("accuracy", accuracy)
    out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(Pipeline([("scale", scaler), ("clf", model)]), out)
    print(f"wrote {out} (test accuracy {accuracy:.3f})", flush=True)


if __name__ == "__main__":
    main()
