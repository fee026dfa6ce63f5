"""Serving: the raw-input MLflow pyfunc model (``pyfunc``; an ensemble of them, ``ensemble``,
running each pretrained backbone its members share once per request, ``shared_backbones``),
batch prediction of a manifest with a logged or registered model (``predict``), and what a
served model says about itself: which inputs it needs (``importance``, ``explain``) and how
fast it answers (``latency``)."""
