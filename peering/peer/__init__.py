"""Replication of exported services over the peer port (SPEC §6, §14): wire messages, exporter, importer, loops."""
