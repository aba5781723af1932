"""Hardware descriptions: devices, nodes, networks and the shipped catalog."""
