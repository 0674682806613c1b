"""How a Lambda execution environment was initialized, for entry points that prime work at init.

Lambda sets `AWS_LAMBDA_INITIALIZATION_TYPE` to `on-demand`, `provisioned-concurrency` or `snap-start`. In the last
two the init runs ahead of the invocations it serves (SnapStart snapshots it; restored environments resume after it),
so work done there is off the invocation's path; on demand, the first invocation follows the init at once and would
pay the same either way. Light on purpose: every entry point imports it.
"""

from __future__ import annotations

import os

INIT_TYPE_ENV = "AWS_LAMBDA_INITIALIZATION_TYPE"
AHEAD_OF_TIME_INITS = frozenset({"snap-start", "provisioned-concurrency"})


def init_runs_ahead() -> bool:
    """True during a SnapStart or provisioned-concurrency init (worth priming clients and imports there)."""
    return os.environ.get(INIT_TYPE_ENV) in AHEAD_OF_TIME_INITS
