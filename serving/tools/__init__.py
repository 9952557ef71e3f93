"""Command lines built on the core: in-process prediction, int8 quantisation, precision
comparison, and the launcher that starts and stops the service for the demo, tests and
benchmarks. They run in the serving image too (no `train` import)."""
