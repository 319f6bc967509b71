"""Front ends: Keras models and float .tflite -> compressed full-integer int8 .tflite.

Entry point: :func:`tinycluster.frontends.pipeline.compress_to_int8_tflite`.
"""
