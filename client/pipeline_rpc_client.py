"""Classify video files with the PP-TSM service over gRPC: `pptsm-rpc` (pptsm_client/
rpc_client.py) run from this folder, without installing the package.

    python client/pipeline_rpc_client.py VIDEO_OR_FOLDER [--host HOST] [--port PORT] [--topk K]
        [--mode uniform|dense|timeline] [--json] [--retries N] ...   (--help for all)
"""
import sys

from pptsm_client.rpc_client import main

if __name__ == "__main__":
    sys.exit(main())
