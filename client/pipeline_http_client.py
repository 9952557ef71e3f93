"""Classify video files with the PP-TSM service over HTTP: `pptsm-http` (pptsm_client/
http_client.py) run from this folder, without installing the package.

    python client/pipeline_http_client.py VIDEO_OR_FOLDER [--url URL] [--binary] [--topk K]
        [--mode uniform|dense|timeline] [--json] [--retries N] ...   (--help for all)
"""
import sys

from pptsm_client.http_client import main

if __name__ == "__main__":
    sys.exit(main())
