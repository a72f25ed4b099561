"""``tokenscale demo``: the whole system on one machine (control plane, twin, operator, live view, report)."""
