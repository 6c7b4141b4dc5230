"""Using the scale-balanced loss in the detectors of other libraries."""
