"""scbloss: the scale-balanced loss for object detection (Shuang et al., Pattern Recognition 117, 2021), reproduced."""

__version__ = "0.1.0"
