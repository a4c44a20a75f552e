"""The MobileNetV2 classifier: building, fitting (with a feature cache), exporting."""
