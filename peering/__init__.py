"""peering: a cluster-peering service that speaks Consul's peering HTTP API."""

import sys

__version__ = "0.1.0"

# httpx imports its own command line (rich, pygments: about 3.5 MB of RSS and 30 ms of start-up) whenever
# those happen to be installed, as in the development environment; nothing here runs it, and httpx falls
# back by itself when it cannot be imported (as in the service's own install, which lacks them)
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
