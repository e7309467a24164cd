"""Triton's example models ``simple``, ``simple_string`` and ``simple_identity`` as kaip classes.

Each takes rows of 16 elements (the batch is the first axis, so kaip may batch requests):
``simple`` adds and subtracts two INT32 tensors, ``simple_string`` does the same on numbers
written as strings, ``simple_identity`` returns its BYTES input unchanged.
"""

from __future__ import annotations

import numpy as np


class Simple:
    inputs = [
        {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]},
        {"name": "INPUT1", "datatype": "INT32", "shape": [-1, 16]},
    ]
    outputs = [
        {"name": "OUTPUT0", "datatype": "INT32", "shape": [-1, 16]},
        {"name": "OUTPUT1", "datatype": "INT32", "shape": [-1, 16]},
    ]

    def __init__(self, artifact_path: str) -> None:
        pass

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        a, b = inputs["INPUT0"], inputs["INPUT1"]
        return {"OUTPUT0": a + b, "OUTPUT1": a - b}


class SimpleString:
    inputs = [
        {"name": "INPUT0", "datatype": "BYTES", "shape": [-1, 16]},
        {"name": "INPUT1", "datatype": "BYTES", "shape": [-1, 16]},
    ]
    outputs = [
        {"name": "OUTPUT0", "datatype": "BYTES", "shape": [-1, 16]},
        {"name": "OUTPUT1", "datatype": "BYTES", "shape": [-1, 16]},
    ]

    def __init__(self, artifact_path: str) -> None:
        pass

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        a = inputs["INPUT0"].astype(np.int64)  # b"3" -> 3
        b = inputs["INPUT1"].astype(np.int64)
        return {
            "OUTPUT0": np.char.encode((a + b).astype(str)).astype(object),
            "OUTPUT1": np.char.encode((a - b).astype(str)).astype(object),
        }


class SimpleIdentity:
    inputs = [{"name": "INPUT0", "datatype": "BYTES", "shape": [-1, -1]}]
    outputs = [{"name": "OUTPUT0", "datatype": "BYTES", "shape": [-1, -1]}]

    def __init__(self, artifact_path: str) -> None:
        pass

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"OUTPUT0": inputs["INPUT0"]}


class StringModels:
    """``simple_string`` and ``simple_identity`` in one class, for one ``kaip serve`` process.

    ``kaip serve`` runs one Model; Triton's string example calls both names on one address, so a
    Model with ``serve.names: [simple_string, simple_identity]`` can serve it from this class:
    two inputs add and subtract, one is returned as it came. (``kaip up`` serves the two
    separately, behind one gateway.)
    """

    def __init__(self, artifact_path: str) -> None:
        self.strings = SimpleString(artifact_path)
        self.identity = SimpleIdentity(artifact_path)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "INPUT1" in inputs:
            return self.strings.predict(inputs)
        return self.identity.predict(inputs)
