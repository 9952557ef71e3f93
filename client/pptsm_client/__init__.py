"""Clients of the PP-TSM video classification service: the `pptsm-http` and `pptsm-rpc`
command lines and the PPTSMClient class.

Standard library only (the gRPC client needs Paddle Serving's protobuf modules, OpenCV is needed
for --frames): users install this folder on its own (`pip install ./client`) or copy it next to
their code, so it imports nothing from the rest of the project.
"""
from .client import ClassifyError, ClassifyResult, PPTSMClient, Ranked, Segment, Window
from .retry import RetryPolicy

__all__ = ["ClassifyError", "ClassifyResult", "PPTSMClient", "Ranked", "RetryPolicy", "Segment",
           "Window"]
