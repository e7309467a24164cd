"""kaip.serving: the model server (data plane) that local replicas and Kubernetes pods run.

Speaks the Open Inference Protocol v2 (REST, with Triton's binary tensor extension) and, for
models that fit, the OpenAI API; batches concurrent requests adaptively; exports Prometheus
metrics and OpenTelemetry traces. Entry point: ``python -m kaip.serving SPEC --model NAME``.

Modules: :mod:`~kaip.serving.server` (process lifecycle), :mod:`~kaip.serving.app` (routes),
:mod:`~kaip.serving.dataplane` (inference logic), :mod:`~kaip.serving.batcher`,
:mod:`~kaip.serving.codec` (OIP v2 wire format), :mod:`~kaip.serving.openai_api`,
:mod:`~kaip.serving.runtimes` (sklearn, ONNX, Python classes, Hugging Face),
:mod:`~kaip.serving.artifacts`, :mod:`~kaip.serving.metrics`, :mod:`~kaip.serving.tracing`.
It never imports the local platform, the Kubernetes client or the CLI.
"""

from kaip.serving.server import ServeOptions, serve

__all__ = ["ServeOptions", "serve"]
