"""Shared code of the booking platform: domain, services and adapters (shipped as a Lambda layer)."""
