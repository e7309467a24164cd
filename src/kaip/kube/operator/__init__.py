"""The kaip operator: reconciles ``Model``, ``App`` and ``TrainingJob`` custom resources.

It runs the same plan, policy and render code as ``kaip render`` and ``kaip up``, applies with
:mod:`kaip.kube.client`, and writes ``.status``: conditions ``Ready`` / ``Progressing`` /
``Degraded`` (:mod:`.conditions`, :mod:`.status`), live revisions and their weights. Canary
gates read a :class:`~kaip.kube.operator.metrics.MetricsSource` (Prometheus in production).

May import :mod:`kaip.kube.client` and every layer below it; never :mod:`kaip.cli` or
:mod:`kaip.local`.
"""
