"""Training in its own process: job specs, the worker, the methods, and a non-blocking job handle for faces."""
