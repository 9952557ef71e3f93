"""The inference engines behind `serving.core.predictor.Predictor`: Paddle Inference (`paddle`,
CPU with oneDNN, GPU with TensorRT) and OpenVINO (`openvino`, CPU), one small contract
(`base.LoadedProgram`), and the per-machine choice of engine and precision (`choice`)."""
