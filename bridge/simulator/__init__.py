"""A local Catapult v1 (Bandwidth Voice & Messaging API v1, messaging part) for tests and demos.

It follows ``catapult-v1.md`` (the API as it really behaved, and the project's decisions where the
docs are silent): same status codes, error bodies, headers, ids, callbacks, limits. Use it
in-process (``Simulator``) or as ``bridge simulator --host H --port P``.

Defaults (all are ``SimulatorSettings`` fields, ``BRIDGE_SIMULATOR__*`` variables or flags):

==========================  =====================================================================
user id                     ``u-simulatoruser2345abcdefg`` (resources under ``/v1/users/{id}/``)
API token / secret          ``t-simulatortoken234abcdefg`` / ``simulator-secret`` (HTTP Basic)
Dashboard account           id ``9900000``, user ``dashboard-user``, password ``dashboard-password``
Dashboard numbers           ``+19195550100`` to ``+19195550199`` (importable with ``provider``;
                            the first 20 are on the account when ``bridge run`` embeds it)
host / port                 ``127.0.0.1`` / ``8090`` (in-process ``start()``: 127.0.0.1, free port)
message limits              1 message/s per account and per sending number, averaged over 10 s
                            (403 ``message-rate-limit`` / ``message-rate-limit-per-tn``)
other families (429)        1 request/s each; number orders 100/min burst 800; number reads
                            2000/s burst 3000 (``X-RateLimit-Reset`` in epoch ms)
faults                      none
==========================  =====================================================================

These identities are not secrets: they only open a simulator. The control endpoints live under
``/_sim`` (see ``control.py``); the faults are described in ``faults.py``.

Parts: ``server`` (the ``Simulator``), ``app`` (composition and middlewares), ``platform`` (the
simulated platform's behaviour), ``messages``/``numbers``/``applications``/``account`` (v1
resources), ``payloads`` (validation), ``events`` and ``callbacks`` (callback content and delivery),
``ratelimit``, ``faults``, ``store`` (state), ``paging``, ``errors`` (error bodies), ``wire`` (HTTP
plumbing), ``control`` and ``cli``.
"""

from bridge.simulator.events import Outcome
from bridge.simulator.faults import Faults
from bridge.simulator.ratelimit import Limits
from bridge.simulator.server import Simulator, SimulatorStatus
from bridge.simulator.store import (
    ApplicationRecord,
    CallbackAttempt,
    MessageRecord,
    NumberRecord,
    SimulatorState,
)

__all__ = [
    "ApplicationRecord",
    "CallbackAttempt",
    "Faults",
    "Limits",
    "MessageRecord",
    "NumberRecord",
    "Outcome",
    "Simulator",
    "SimulatorState",
    "SimulatorStatus",
]
