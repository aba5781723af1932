"""Distributed training: collectives over multi-dimensional topologies and step simulation."""
