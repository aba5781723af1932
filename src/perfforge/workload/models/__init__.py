"""Model builders. ``perfforge.workload.zoo`` registers the named models."""
