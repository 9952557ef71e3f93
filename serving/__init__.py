"""Online stage: preprocessing library, model metadata, Paddle Inference predictor and the
Paddle Serving pipeline. Modules other than `compat`, `ops` and `service` import without
Paddle Serving, so training and evaluation can reuse them."""
