"""peering: a cluster-peering service that speaks Consul's peering HTTP API."""

__version__ = "0.1.0"
