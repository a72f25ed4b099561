"""The discrete-event simulator of a PD cluster, traces, profiles and the real-time twin."""
