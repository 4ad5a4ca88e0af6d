"""Where networks come from and how else they run: names and files → modules
(``networks.load_network``), ONNX import/export and the onnxruntime backend (``onnx``),
safetensors files (``safetensors_io``) and format conversion (``convert``).
"""
