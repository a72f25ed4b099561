"""Kubernetes I/O: the /scale subresource, pods, labels, status and events. The only client of the API."""
