"""kaip, the Kubernetes AI Platform.

One spec (``kaip.yaml``: ``Model``, ``App``, ``TrainingJob``) runs locally with ``kaip up`` and
on Kubernetes as custom resources. The public Python API is re-exported here; everything else is
internal and may change.
"""

from kaip.errors import KaipError

__version__ = "0.1.0"

__all__ = ["KaipError", "__version__"]
