"""kaip.accounting: cost, energy and carbon of requests, revisions and owners, from measured usage.

Pure: values in, values out; never reads the OS, the clock, a GPU or the network (callers pass
what they measured) and never imports another kaip layer but its own.

The rule. A replica observed for ``W`` wall seconds used ``cpu_seconds`` (from the OS) and was
busy ``B`` seconds: the sum of its requests' shares, where a batch's wall time is shared among
its members by work (:func:`shares`; without batching, the time a request was in flight over
the number in flight). Its allocation cost is ``hours x (CPU price x max(vCPUs, cores used) +
RAM price x GB + GPU price x GPUs)`` (OpenCost). Its energy is CCF's linear power model
integrated, ``vCPUs x MinW x W + (MaxW - MinW) x cpu_seconds`` plus ``0.392 W/GB x GB x W``
(plus measured GPU joules), times PUE; carbon is energy in kWh times the grid's gCO2e/kWh.
The static part (what the replica costs and draws by being there) is shared by time: on the
*usage* basis requests carry ``B/W`` of it and idle the rest; on the *allocation* basis
requests carry all of it. The active part (energy above the idle floor) always follows the
requests. So on either basis requests plus idle add up to the replica exactly.

Worked example (the defaults: OpenCost prices, CCF's AWS average 0.74/3.5 W per vCPU for an
unknown CPU, PUE 1, Ember's 436 g/kWh). One replica, 1 vCPU, 0.5 GB, one hour, 720 CPU seconds,
busy 900 s, 10,000 requests. Cost ``1 h x (0.031611 x 1 + 0.004237 x 0.5) = $0.033730``; usage
basis: requests ``x 900/3600 = $0.008432`` ($0.000843 per 1,000), idle $0.025297. Energy: static
``0.74 x 3600 + 0.392 x 0.5 x 3600 = 3369.6 J``, active ``2.76 x 720 = 1987.2 J``; requests
``3369.6 x 0.25 + 1987.2 = 2829.6 J`` (0.283 J per request, 0.343 gCO2e), idle 2527.2 J.
(tests/unit/test_accounting.py checks these numbers.)
"""

from kaip.accounting.coefficients import (
    Coefficients,
    CpuPower,
    Prices,
    cpu_power,
    micro_architecture,
)
from kaip.accounting.kernel import (
    Attribution,
    Basis,
    By,
    Figures,
    GpuEnergyMeter,
    ReplicaWindow,
    Row,
    Step,
    attribute,
    figures_json,
    key_names,
    replica_cost_usd,
    report,
    roll_up,
    shares,
    window_since,
)
from kaip.accounting.prices import PriceBook, PriceConfigError

__all__ = [
    "Attribution",
    "Basis",
    "By",
    "Coefficients",
    "CpuPower",
    "Figures",
    "GpuEnergyMeter",
    "PriceBook",
    "PriceConfigError",
    "Prices",
    "ReplicaWindow",
    "Row",
    "Step",
    "attribute",
    "cpu_power",
    "figures_json",
    "key_names",
    "micro_architecture",
    "replica_cost_usd",
    "report",
    "roll_up",
    "shares",
    "window_since",
]
