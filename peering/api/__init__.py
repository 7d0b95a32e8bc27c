"""The client HTTP API (Consul's `/v1/peering…` routes): schemas in, one service call, JSON out."""
