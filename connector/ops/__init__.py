"""Operating the service: metrics, probes, the access log, log context and request ids, retention and backup."""
