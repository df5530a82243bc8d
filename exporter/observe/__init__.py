"""The operator's view: the daemon's own log, Prometheus text, and text made safe to show."""
