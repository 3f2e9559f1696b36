"""fleetgate: a GitOps reconciler for fleets of industrial edge devices."""

__version__ = "0.1.0"
