"""Service layer: use cases that take their dependencies as arguments."""
