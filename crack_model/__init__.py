"""Concrete crack classifier: data, model, training, evaluation and batch scoring.

A plain Python library (it never imports Airflow). Heavy dependencies (TensorFlow,
scikit-learn, Great Expectations) are imported inside the functions that need them,
so importing this package and running ``crack-model --help`` stay fast.
"""

__version__ = "0.1.0"
