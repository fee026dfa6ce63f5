"""Encoders, one module per modality; importing this package fills the registries.

Each modality's module (``text``, ``image``, ``audio``, ``video``, ``sensor``, ``tabular``) holds
all its encoders, in up to three sections: trained from scratch with the model; classical (a
feature extractor fitted on the training split, such as TF-IDF, into a small network); and
pretrained (a Hugging Face or timm backbone, frozen or fine-tuned). What a family shares is in
a private module: ``_classical`` (standardised features and their MLP), ``_pretrained`` (model
inputs, frozen outputs computed once, token capping, staged unfreezing), ``_embed`` (a backbone
run over many rows in batches), ``_hf`` and ``_timm``
(loading transformers and timm models; those libraries are imported only when a model is
built). ``pair``: two encoders on one input (``tfidf+hf_text``)."""

from autofusion.models.encoders import (  # noqa: F401
    audio,
    image,
    pair,
    sensor,
    tabular,
    text,
    video,
)
