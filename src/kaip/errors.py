"""The one error tree of kaip.

Every error kaip raises on purpose derives from :class:`KaipError`. Each class carries what the
edges need to report it: ``exit_code`` for the CLI and ``http_status`` for the servers, so one
handler per entrypoint maps any of them and no caller writes that mapping again.

::

    KaipError                       exit 1, HTTP 500
    ├── SpecError                   exit 2: the user's spec is wrong (carries every problem)
    ├── ConfigError                 exit 2: a setting, flag or file argument is wrong
    ├── ArtifactError               exit 1: an artifact cannot be fetched, verified or loaded
    │   └── UntrustedArtifactError  exit 2: a pickle without sha256 or ``trust: true``
    ├── InferenceError              HTTP 400: a request the server cannot serve as sent
    │   ├── ModelNotFoundError      HTTP 404
    │   ├── PayloadTooLargeError    HTTP 413
    │   ├── UnsupportedMediaError   HTTP 415: a body in a Content-Type the route does not take
    │   ├── UnsupportedExtensionError  HTTP 501: a protocol extension kaip does not implement
    │   └── OverloadedError         HTTP 503, with a Retry-After delay
    ├── PlatformError               exit 1: the local control plane cannot do what was asked
    │   └── StorageError            HTTP 503: .kaip/ cannot be written now (locked, disk full)
    ├── AccessError                 exit 3, HTTP 401: no valid credential for the control API
    │   ├── ForbiddenError          HTTP 403: known, or from a foreign page, and not allowed this
    │   └── WrongHostError          HTTP 421: a Host that is not a name of the control port
    ├── RolloutFailedError          exit 4: a rollout was rolled back (a gate or check failed)
    ├── RolloutAbortedError         exit 5: a rollout was aborted or replaced before 100 %
    ├── RolloutTimeoutError         exit 6: --wait/--watch gave up at --timeout (it goes on)
    ├── RegistryError               exit 1, HTTP 404: no such model version, or the registry failed
    ├── MetricsError                exit 1: the metrics source (Prometheus) cannot answer
    ├── EngineError                 exit 1, HTTP 502: a Model's engine (vLLM, ...) failed to start
    │                               or cannot be reached
    └── KubeError                   exit 1: the cluster refused or could not be reached
        ├── KubeUnreachableError
        ├── KubeConfigError         exit 2
        ├── KubeForbiddenError      exit 3: RBAC said no
        └── ForeignObjectError      exit 4: an object of that name exists and is not kaip's

Errors say what is wrong and how to fix it, in words a user can act on; they never carry a
traceback to the user. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class KaipError(Exception):
    """Base class of every error kaip raises on purpose."""

    exit_code: int = 1
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Problem:
    """One problem found in a spec file, located to the character."""

    file: str
    line: int
    column: int
    path: str
    message: str
    hint: str = ""

    def render(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        field = f" {self.path}:" if self.path else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}:{field} {self.message}{hint}"


class SpecError(KaipError):
    """The spec is invalid. Carries every problem found, not just the first."""

    exit_code = 2
    http_status = 422

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column, p.path))
        super().__init__("\n".join(p.render() for p in self.problems))


class ConfigError(KaipError):
    """A setting, command-line flag or argument is wrong."""

    exit_code = 2


class ArtifactError(KaipError):
    """A model artifact cannot be fetched, verified or loaded."""


class UntrustedArtifactError(ArtifactError):
    """A pickle-based artifact that is neither pinned by sha256 nor marked ``trust: true``."""

    exit_code = 2


class InferenceError(KaipError):
    """A request a server cannot serve as sent (the client's mistake)."""

    http_status = 400


class ModelNotFoundError(InferenceError):
    http_status = 404


class PayloadTooLargeError(InferenceError):
    http_status = 413


class UnsupportedMediaError(InferenceError):
    http_status = 415


class UnsupportedExtensionError(InferenceError):
    """A route of a Triton or KServe protocol extension kaip does not implement."""

    http_status = 501


class OverloadedError(InferenceError):
    """The server is full; the client should retry after ``retry_after`` seconds."""

    http_status = 503

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PlatformError(KaipError):
    """The local control plane cannot do what was asked."""


class StorageError(PlatformError):
    """``.kaip/`` cannot be written now: ``state.db`` is locked, or the disk is full.

    Passing: ``kaip up`` keeps serving, shows it in ``kaip status`` and tries again.
    """

    http_status = 503


class AccessError(KaipError):
    """The control API (``kaip up``'s admin port) does not know who is asking."""

    exit_code = 3
    http_status = 401


class ForbiddenError(AccessError):
    """The request is refused whoever sent it: its role, or the page it came from, may not."""

    http_status = 403


class WrongHostError(AccessError):
    """The request names a Host the control port does not answer to (DNS rebinding, a proxy)."""

    http_status = 421


class RolloutFailedError(KaipError):
    """``--wait``/``--watch``: the new revision was rolled back; the stable one serves."""

    exit_code = 4


class RolloutAbortedError(KaipError):
    """``--wait``/``--watch``: the rollout was aborted or superseded before reaching 100 %."""

    exit_code = 5


class RolloutTimeoutError(KaipError):
    """``--wait``/``--watch``: the rollout had not ended at ``--timeout``; it goes on."""

    exit_code = 6


class RegistryError(KaipError):
    """The model registry has no such model, version or alias, or cannot be read or written."""

    http_status = 404


class MetricsError(KaipError):
    """The metrics source behind the rollout gates (Prometheus) cannot answer."""


class EngineError(KaipError):
    """The inference engine a Model is served by (``serve.engine``) did not start, exited, or did
    not answer the replica that relays to it."""

    http_status = 502


class KubeError(KaipError):
    """The Kubernetes API refused a request or could not be reached."""


class KubeUnreachableError(KubeError):
    pass


class KubeConfigError(KubeError):
    exit_code = 2


class KubeForbiddenError(KubeError):
    exit_code = 3


class ForeignObjectError(KubeError):
    """Objects kaip would write exist and are not kaip's to take over; nothing was written.

    ``objects`` holds each one's reference, the object as read, and why it is not kaip's.
    """

    exit_code = 4
    http_status = 409

    def __init__(self, message: str, objects: tuple[tuple[Any, Any, str], ...] = ()) -> None:
        super().__init__(message)
        self.objects = objects
