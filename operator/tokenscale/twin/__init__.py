"""The twin: the simulator's cluster model in real time, bound to a live cluster.

It watches the pods of every DisaggregatedInferenceService's prefill and decode targets, runs one cluster model
per service with an instance per pod, replays a load through it, and serves each pod's vLLM-format ``/metrics``
on the pod's own IP, so the operator scales simulated engines exactly as it scales real ones (docs/demo.md).
"""
