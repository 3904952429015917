"""Where graphs come from: model sources and the zoo, the graph cache, PyTorch lowering (``lowering``, the only
room that imports torch at lowering time), ONNX import and SCALE-Sim topologies."""
