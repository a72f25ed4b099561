"""Scaling policies, one module each, chosen by name from `tokenscale.core.policies.registry`."""
