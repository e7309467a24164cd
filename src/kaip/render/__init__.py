"""kaip.render: a resolved plan -> what a target runs.

:mod:`kaip.render.kube` renders Kubernetes manifests. Pure: nothing here does I/O.
"""
