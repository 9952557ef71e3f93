"""Where the PaddleVideo reference oracle lives: `../shared/reference` beside the repository
(as on developer machines and in CI), unless PPTSM_REFERENCE_DIR points elsewhere."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("PPTSM_REFERENCE_DIR",
                                    REPO_ROOT.parent / "shared" / "reference"))
