"""The slow operations proofs (issue 14): real Prometheus, real nginx in front of two replicas,
a container image built and run. `make test-ops` runs them (TOGETHER_OPS_TESTS=1); a plain
`pytest` leaves this folder out so `make test` stays fast."""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("TOGETHER_OPS_TESTS") == "1" else ["test_*.py"]
