"""Online stage, in three roles (see README, "The pieces"):

* `serving.core`: the inference core both stages share (model metadata, preprocessing and video
  decoding, the Paddle Inference predictor, postprocessing, errors, list files, model-folder
  confs). It imports neither Paddle Serving's pipeline nor `train`, so training, evaluation and
  the tools compute exactly what the service computes.
* `serving.pipeline`: the Paddle Serving application (ops, service, servers, observation).
* `serving.tools`: command lines on the core (predict, quantize, precision check, launcher).
"""
