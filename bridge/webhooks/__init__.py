"""Parsers for inbound webhooks: raw bytes in, domain events out (marshmallow, at the edge, once)."""
