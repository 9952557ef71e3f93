"""Model zoo: importing this package registers every builder."""
from train.models.registry import build_model, list_models, register_model  # noqa: F401
from train.models import pptsm_v2  # noqa: F401,E402  (registers PP-TSMv2 builders)
