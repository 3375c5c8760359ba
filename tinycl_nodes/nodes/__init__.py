"""The graph's nodes: each one validated parameters + wiring of a core object to the bus."""
