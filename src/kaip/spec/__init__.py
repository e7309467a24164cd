"""The kaip spec: ``Model``, ``App`` and ``TrainingJob`` as frozen pydantic models, and loading.

Pure except for :mod:`kaip.spec.loader`, the one owner of reading spec files.
"""

from kaip.spec.base import API_VERSION, GROUP, VERSION, ObjectMeta, Resources, Scaling
from kaip.spec.kinds import (
    KINDS,
    App,
    Artifact,
    Batching,
    Model,
    Resource,
    Serve,
    TrainingJob,
    first_clash,
    names_clash,
)
from kaip.spec.loader import (
    SpecDocument,
    SpecSet,
    dump_resource,
    dump_yaml,
    load_document,
    load_paths,
    load_text,
)
from kaip.spec.rollout import Rollout

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "App",
    "Artifact",
    "Batching",
    "Model",
    "ObjectMeta",
    "Resource",
    "Resources",
    "Rollout",
    "Scaling",
    "Serve",
    "SpecDocument",
    "SpecSet",
    "TrainingJob",
    "dump_resource",
    "dump_yaml",
    "first_clash",
    "load_document",
    "load_paths",
    "load_text",
    "names_clash",
]
