"""Model zoo: importing this package registers every architecture builder; the released
variants (train/models/variants.py) register themselves the first time the registry is asked."""
from train.models.registry import build_model, list_models, register_model  # noqa: F401
from train.models import pptsm_v2  # noqa: F401,E402  (registers PP-TSMv2 builders)
from train.models import pptsm_resnet  # noqa: F401,E402  (registers PP-TSM ResNet builders)
from train.models import pptsm_mobilenet_v2  # noqa: F401,E402  (registers PP-TSM MobileNetV2)
from train.models import pptsm_mobilenet_v3  # noqa: F401,E402  (registers PP-TSM MobileNetV3)
