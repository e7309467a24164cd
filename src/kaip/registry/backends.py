"""Which registry a kaip registers versions into and reads them from (``KAIP_REGISTRY__*``).

kaip's embedded registry always exists (its ``registry.db`` also holds the run records); with
``backend: mlflow`` versions live in an MLflow tracking server instead, and Models name them
``models:/NAME/VERSION|@ALIAS``. A Model whose URI names the other registry is refused with what
to set. Imports MLflow's client only when it is the backend.
"""

from __future__ import annotations

from kaip.errors import RegistryError
from kaip.registry.embedded import EmbeddedRegistry
from kaip.registry.records import Registry
from kaip.settings import RegistrySettings

SCHEMES = {"registry": "registry://", "mlflow": "models:/"}


def open_registry(embedded: EmbeddedRegistry, settings: RegistrySettings) -> Registry:
    """The registry ``settings`` name: ``embedded`` itself, or the MLflow server's."""
    if settings.backend == "mlflow":
        from kaip.registry.mlflow_backend import MlflowRegistry

        return MlflowRegistry.open(settings.mlflow_uri)
    return embedded


def check_scheme(uri: str, registry: Registry, what: str) -> None:
    """RegistryError unless ``uri`` names a version in ``registry`` (its scheme)."""
    if uri.startswith(SCHEMES[registry.kind]):
        return
    if registry.kind == "mlflow":
        fix = f"name its versions models:/NAME/VERSION or models:/NAME@ALIAS, or unset {_ENV}"
    else:
        fix = f"set {_ENV}=mlflow and KAIP_REGISTRY__MLFLOW_URI to the tracking server's URL"
    raise RegistryError(
        f"{what}: {uri} names a version in another registry than this kaip's ({registry.kind}): "
        f"{fix}"
    )


_ENV = "KAIP_REGISTRY__BACKEND"
