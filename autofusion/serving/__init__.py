"""Serving: the raw-input MLflow pyfunc model (``pyfunc``) and batch prediction of a
manifest with a logged or registered model (``predict``)."""
