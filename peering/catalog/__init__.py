"""The service catalog (SPEC §13) and exported services (§14): nodes, instances and checks per partition and
peer, what each peer receives, and the services that register, read and time them out."""
