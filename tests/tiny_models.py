"""Tiny pretrained-style models made in a test, saved the way the libraries save real ones
(``save_pretrained``, a timm state dict), so the real loading, caching, training and serving
code runs with no network."""

from __future__ import annotations

from pathlib import Path

from autofusion.modalities.text import FILLER, WORD_GROUPS

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def demo_vocab() -> dict[str, int]:
    """The demo texts' words (and BERT's special tokens) as a WordPiece vocabulary."""
    words = [w for groups in WORD_GROUPS for g in groups for w in g] + list(FILLER)
    return {w: i for i, w in enumerate(SPECIAL + sorted(set(words)))}


def tiny_bert(folder: Path, *, hidden: int = 16, layers: int = 2) -> Path:
    """A 2-layer BERT of width 16 with a tokenizer for the demo's words, in ``folder``."""
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = demo_vocab()
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    BertTokenizer(vocab=vocab).save_pretrained(folder)
    return folder


def tiny_timm(path: Path, arch: str = "test_vit") -> Path:
    """A state-dict checkpoint of one of timm's tiny test models (``test_vit``, ``test_resnet``)."""
    import timm
    import torch

    torch.save(timm.create_model(arch, pretrained=False).state_dict(), path)
    return path


def tiny_clip(folder: Path) -> Path:
    """A CLIP model with one-layer towers (text width 16, vision width 24 at 32 px, projection
    8), a BERT tokenizer for the demo's words, and an image processor, in ``folder``."""
    from transformers import BertTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

    vocab = demo_vocab()
    config = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "intermediate_size": 32, "max_position_embeddings": 32, "bos_token_id": 2, "eos_token_id": 3,
                     "pad_token_id": 0},
        vision_config={"hidden_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
                       "image_size": 32, "patch_size": 8},
        projection_dim=8)
    CLIPModel(config).save_pretrained(folder)
    BertTokenizer(vocab=vocab).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def tiny_wav2vec2(folder: Path, sample_rate: int = 8000) -> Path:
    """A 2-layer wav2vec2 of width 16 with its feature extractor at ``sample_rate``, in ``folder``."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                            conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=4,
                            num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=sample_rate).save_pretrained(folder)
    return folder
