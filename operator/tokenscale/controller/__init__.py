"""The kopf operator: the only place kopf is imported."""
