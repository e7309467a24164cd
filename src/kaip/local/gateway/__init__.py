"""kaip.local.gateway: the one HTTP port of ``kaip up`` in front of every replica and app.

Routes Open Inference Protocol v2 paths and OpenAI routes (by the body's ``model``) by the
Models' served names, Apps by ``/apps/{name}/`` prefix; picks a revision by weight and a replica
by least outstanding requests; retries a failed connection, or a replica that does not answer
within the route's response timeout, on another replica; holds requests while a route scales
from zero; records per-revision stats for the rollout gates; answers server metadata, model
lists and Triton's statistics (summed over replicas) itself. The controller drives it with
:meth:`Gateway.set_routes` and reads it with :meth:`Gateway.take_stats` and :meth:`Gateway.load`.
Never starts processes and never imports the controller, supervisor or state.
"""

from kaip.local.gateway.gateway import Gateway
from kaip.local.gateway.routes import Backend, Route
from kaip.local.gateway.stats import LoadSample, RevisionStats

__all__ = ["Backend", "Gateway", "LoadSample", "RevisionStats", "Route"]
