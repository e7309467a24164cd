"""Inference logic of one served model, apart from HTTP: load, metadata, validate, batch, predict.

:class:`ServedModel` owns a runtime and its batcher. It validates a decoded request against the
runtime's tensor metadata *before* queueing it (so a malformed request never reaches a batch),
maps the model's own input errors to HTTP 400 and enforces the per-request timeout. It never
parses HTTP or JSON.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from kaip.errors import InferenceError, KaipError, OverloadedError, UnsupportedExtensionError
from kaip.protocol.statistics import InferenceStats
from kaip.serving.batcher import Batcher, Outputs, Pending, expire
from kaip.serving.codec import DTYPES, InferRequest, fit
from kaip.serving.metrics import ServerMetrics
from kaip.serving.runtimes import Runtime
from kaip.serving.runtimes.base import Array, TensorSpec
from kaip.serving.tracing import Tracing

log = logging.getLogger(__name__)

# A model that answers its probe faster than this predicts on the event loop: handing a batch
# to a thread costs ~50-100 us, more than such a model does.
INLINE_BELOW_SECONDS = 0.002
_MODEL_INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError)


class ServedModel:
    """One model: ``name`` is its resource name (metrics, logs), ``names`` what clients call it."""

    def __init__(
        self,
        name: str,
        revision: str,
        *,
        max_batch_size: int,
        max_delay: float,
        max_queue: int,
        timeout: float,
        metrics: ServerMetrics,
        tracing: Tracing | None = None,
        names: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.names: tuple[str, ...] = tuple(names) or (name,)
        self.revision = revision
        self.stats = InferenceStats()
        self._runtime: Runtime | None = None
        self.metrics = metrics
        self.tracing = tracing
        self.timeout = timeout
        self.ready = False
        self.served_by: str | None = None
        """The engine serving this model (``serve.engine``), which kaip relays to: no runtime."""
        self._max_batch_size = max_batch_size
        self._max_delay = max_delay
        self._max_queue = max_queue
        self.batcher: Batcher | None = None
        self._input_specs: dict[str, TensorSpec] = {}
        self._batchable = True
        self._can_predict = True

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        self._not_relayed()
        if self._runtime is None:
            raise OverloadedError(f"model {self.name!r} is still loading", retry_after=1.0)
        return self._runtime

    def load(self, runtime: Runtime) -> None:
        """Load ``runtime``, warm it up and decide where it predicts (blocking; call once)."""
        runtime.load()
        self._runtime = runtime
        self._input_specs = {s.name: s for s in self.runtime.inputs}
        self._batchable = runtime.batchable
        self._can_predict = bool(getattr(runtime, "can_predict", True))
        inline = False
        probe = self.runtime.probe()
        if probe is not None:
            self.runtime.predict(probe)  # warm-up
            started = time.perf_counter()
            self.runtime.predict(probe)
            inline = time.perf_counter() - started < INLINE_BELOW_SECONDS
        self.batcher = Batcher(
            self.runtime.predict,
            max_batch_size=self._max_batch_size,
            max_delay=self._max_delay,
            max_queue=self._max_queue,
            timeout=self.timeout,
            batchable=self.runtime.batchable,
            inline=inline,
            observer=self,
        )
        batcher = self.batcher
        self.metrics.queue_depth = lambda: batcher.depth
        engine_stats = getattr(runtime, "engine_stats", None)
        if callable(engine_stats):
            self.metrics.engine = engine_stats
        log.info(
            "model %s loaded (%s, predict %s, batching up to %d rows)",
            self.name,
            self.runtime.platform,
            "inline" if inline else "on a worker thread",
            self.batcher.max_batch_size,
        )

    def _not_relayed(self) -> None:
        """A model an engine serves (``served_by``) has no runtime here: 501 for OIP v2."""
        if self.served_by is not None:
            raise UnsupportedExtensionError(
                f"model {self.name!r} is served by the engine {self.served_by!r} over the OpenAI "
                "API (/v1/...); OIP v2 inference is not available for it"
            )

    def mark_ready(self) -> None:
        self.ready = True
        self.metrics.ready.set(1)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()

    # -- metadata --------------------------------------------------------------------------------

    def metadata(self, name: str) -> dict[str, Any]:
        """OIP model metadata, under the served ``name`` the client asked for."""
        if self.served_by is not None:
            platform = f"engine:{self.served_by}"
            return {"name": name, "versions": [self.revision], "platform": platform,
                    "inputs": [], "outputs": []}  # fmt: skip
        return {
            "name": name,
            "versions": [self.revision],
            "platform": self.runtime.platform,
            "inputs": [s.to_json() for s in self.runtime.inputs],
            "outputs": [s.to_json() for s in self.runtime.outputs],
        }

    # -- inference -------------------------------------------------------------------------------

    def validate(self, request: InferRequest) -> tuple[dict[str, Array], int, Hashable]:
        """The request's arrays keyed by model input, its row count and its batch key."""
        if not self._can_predict:
            raise InferenceError(
                f"model {self.name!r} generates text and has no infer; use /v1/completions or "
                "/v1/chat/completions"
            )
        arrays = self._match_inputs(request)
        rows = 1
        if self._batchable:
            first = next(iter(arrays.values()))
            if first.ndim == 0:
                raise InferenceError(
                    f"model {self.name!r} batches along the first axis: send shape [rows, ...]"
                )
            rows = first.shape[0]
            for name, array in arrays.items():
                if array.ndim == 0 or array.shape[0] != rows:
                    raise InferenceError(
                        f"input {name!r} has {array.shape[0] if array.ndim else 0} rows, but the "
                        f"other inputs have {rows}: every input needs the same first dimension"
                    )
        key = tuple((name, a.dtype.str, a.shape[1:]) for name, a in arrays.items())
        return arrays, rows, key

    def check_datatype(self, sent: str, datatype: str, inputs_sent: int) -> None:
        """Refuse a tensor the model cannot take, before its data is decoded: BYTES for a
        numeric input or a number for a BYTES one (names and the rest are checked later)."""
        specs = self._input_specs
        spec = next(iter(specs.values())) if len(specs) == 1 and inputs_sent == 1 else None
        spec = spec or specs.get(sent)
        if spec is None or datatype == spec.datatype or datatype in spec.accepts:
            return
        if datatype == "BYTES" or spec.datatype == "BYTES":
            raise self._wrong_datatype(spec, datatype, sent)

    def _wrong_datatype(self, spec: TensorSpec, datatype: str, sent: str) -> InferenceError:
        return InferenceError(
            f"input {sent!r} is {datatype}, but model {self.name!r} takes {spec.datatype} for "
            f"{spec.name!r}"
        )

    def _match_inputs(self, request: InferRequest) -> dict[str, Array]:
        specs = self._input_specs
        if not specs:
            return request.inputs
        if len(specs) == 1 and len(request.inputs) == 1:
            (spec,) = specs.values()
            ((sent_name, array),) = request.inputs.items()
            return {spec.name: self._conform(spec, array, request.datatypes[sent_name], sent_name)}
        missing = [n for n in specs if n not in request.inputs]
        if missing:
            raise InferenceError(
                f"model {self.name!r} needs input(s) {', '.join(map(repr, missing))}; it takes "
                f"{', '.join(map(repr, specs))}"
            )
        unknown = [n for n in request.inputs if n not in specs]
        if unknown:
            raise InferenceError(
                f"model {self.name!r} has no input(s) {', '.join(map(repr, unknown))}; it takes "
                f"{', '.join(map(repr, specs))}"
            )
        return {
            n: self._conform(specs[n], request.inputs[n], request.datatypes[n], n) for n in specs
        }

    def _conform(self, spec: TensorSpec, array: Array, datatype: str, sent: str) -> Array:
        if datatype != spec.datatype and datatype not in spec.accepts:
            target = DTYPES.get(spec.datatype)
            if (
                datatype == "BYTES"
                or spec.datatype == "BYTES"
                or target is None
                or not np.can_cast(array.dtype, target, "same_kind")
            ):
                raise self._wrong_datatype(spec, datatype, sent)
            array = fit(array, target, f"input {sent!r} (as {spec.datatype})")
        if not self._shape_fits(spec.shape, array.shape):
            raise InferenceError(
                f"input {sent!r} has shape {list(array.shape)}, but model {self.name!r} takes "
                f"{list(spec.shape)} for {spec.name!r} (-1: any size)"
            )
        return array

    def _shape_fits(self, want: tuple[int, ...], got: tuple[int, ...]) -> bool:
        """Does ``got`` match ``want`` (``-1`` = any; the batch axis is free when batching)?"""
        if len(want) != len(got):
            return False
        for i in range(1 if self._batchable else 0, len(want)):
            if want[i] != -1 and want[i] != got[i]:
                return False
        return True

    async def infer(self, request: InferRequest, span: Any = None) -> Outputs:
        """Validate, queue, await the batch; raises a KaipError for anything the client did."""
        self._not_relayed()
        if not self.ready or self.batcher is None:
            raise OverloadedError(f"model {self.name!r} is still loading", retry_after=1.0)
        arrays, rows, key = self.validate(request)
        future = self.batcher.submit(arrays, rows, key, span)
        # An inline model cannot be interrupted by a timer (it predicts on this loop), and the
        # batcher drops requests that waited past their deadline; a timer is needed only when
        # predict runs on a thread, to answer while it is still busy.
        timer = (
            None
            if self.batcher.inline
            else asyncio.get_running_loop().call_later(self.timeout, expire, future, self.timeout)
        )
        try:
            return await future
        except KaipError:
            raise
        except _MODEL_INPUT_ERRORS as exc:
            raise InferenceError(f"model {self.name!r} rejected the input: {exc}") from exc
        finally:
            if timer is not None:
                timer.cancel()

    def select_outputs(
        self, request: InferRequest, outputs: Outputs
    ) -> list[tuple[str, Array, bool]]:
        """The outputs the client asked for, each with its binary flag."""
        if request.outputs is None:
            return [(n, a, request.binary_output) for n, a in outputs.items()]
        selected = []
        for wanted in request.outputs:
            array = outputs.get(wanted.name)
            if array is None:
                raise InferenceError(
                    f"model {self.name!r} has no output {wanted.name!r}; it returns "
                    f"{', '.join(map(repr, outputs))}"
                )
            selected.append((wanted.name, array, wanted.binary or request.binary_output))
        return selected

    # -- BatchObserver ---------------------------------------------------------------------------

    def batch_done(self, batch: list[Pending], started: float, finished: float) -> None:
        m = self.metrics
        stats = self.stats
        m.predict_time.observe(finished - started)
        m.batch_rows.observe(sum(p.rows for p in batch))
        counted = None
        for p in batch:
            m.queue_time.observe(started - p.enqueued)
            execution = p.execution
            if execution is None:
                continue
            if execution is not counted:  # requests merged into one call share its Execution
                counted = execution
                stats.executed(execution)
            future = p.future
            if execution.ok and not future.cancelled() and future.exception() is None:
                stats.served(p.rows, started - p.enqueued, execution)
        if self.tracing is not None:
            self.tracing.batch_done(batch, started, finished)
