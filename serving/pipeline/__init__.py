"""The Paddle Serving application: the ops of the decode -> sample -> normalize -> pptsm DAG,
the service and its servers (gRPC, REST, metrics), request observation, logs and limits of the
transport. Import `serving.pipeline.compat` before any Paddle Serving module."""
