"""Float .tflite -> Keras model, so the Keras front end can compress it."""
from __future__ import annotations

from ..errors import TinyClusterError


def tflite_to_keras(path):
    raise TinyClusterError(f"{path}: float .tflite models are not supported yet; give the Keras model "
                           "(.keras/.h5/SavedModel) or a full-integer int8 .tflite")
