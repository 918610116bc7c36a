"""Tiny randomly initialised Hugging Face models of every family the HF importer reads, saved
the way users save them (``save_pretrained``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

transformers = __import__("pytest").importorskip("transformers")


def _text(cls: str, cfg: str, **kw: Any) -> Callable[[], Any]:
    return lambda: getattr(transformers, cls)(getattr(transformers, cfg)(**kw))


FAMILIES: dict[str, Callable[[], Any]] = {
    "bert": _text(
        "BertModel",
        "BertConfig",
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=32,
    ),
    "distilbert": _text(
        "DistilBertForSequenceClassification",
        "DistilBertConfig",
        vocab_size=64,
        dim=32,
        n_layers=2,
        n_heads=4,
        hidden_dim=48,
        max_position_embeddings=32,
        num_labels=3,
    ),
    "roberta": _text(  # positions count the non-padding tokens (pad id 1)
        "RobertaForSequenceClassification",
        "RobertaConfig",
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=40,
        num_labels=3,
    ),
    "gpt2": _text(
        "GPT2LMHeadModel",
        "GPT2Config",
        vocab_size=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=32,
    ),
    "llama": _text(
        "LlamaForCausalLM",
        "LlamaConfig",
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
    ),
    "phi": _text(  # partial rotary: the first half of each head's dims rotate
        "PhiForCausalLM",
        "PhiConfig",
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=32,
        partial_rotary_factor=0.5,
        initializer_range=0.2,  # scores far from uniform, as trained: q/k dims matter
    ),
    "gpt_neox": _text(  # partial rotary; q, k, v fused per head
        "GPTNeoXForCausalLM",
        "GPTNeoXConfig",
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=32,
        rotary_pct=0.5,
        initializer_range=0.2,  # scores far from uniform, as trained: q/k dims matter
    ),
    "mpt": _text(  # ALiBi: a fixed attention bias per head, slope × key-query distance
        "MptForCausalLM",
        "MptConfig",
        vocab_size=64,
        d_model=32,
        n_layers=2,
        n_heads=4,
        max_seq_len=32,
        initializer_range=0.2,  # scores far from uniform, as trained
    ),
    "bart": _text(  # encoder-decoder; the decoder reads the ids shifted right (its default)
        "BartForConditionalGeneration",
        "BartConfig",
        vocab_size=64,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=48,
        decoder_ffn_dim=48,
        max_position_embeddings=32,
    ),
    "vit": _text(
        "ViTForImageClassification",
        "ViTConfig",
        image_size=16,
        patch_size=4,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        num_labels=5,
    ),
    "resnet": _text(
        "ResNetForImageClassification",
        "ResNetConfig",
        num_channels=3,
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        num_labels=5,
    ),
    "mobilenet_v2": _text(
        "MobileNetV2ForImageClassification",
        "MobileNetV2Config",
        num_channels=3,
        image_size=32,
        depth_multiplier=0.25,
        num_labels=5,
    ),
    "convnext": _text(
        "ConvNextForImageClassification",
        "ConvNextConfig",
        num_channels=3,
        num_stages=2,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        num_labels=5,
        image_size=32,
    ),
}


def save(family: str, directory: str, seed: int = 0) -> Any:
    """Build `family`'s tiny model with `seed`, save it into `directory`, return it (eval)."""
    torch.manual_seed(seed)
    model = FAMILIES[family]().eval()
    model.save_pretrained(directory)
    return model


def example(model: Any, input_shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    """A batch of 2 inputs of `input_shape`: token ids, or images for image models."""
    g = torch.Generator().manual_seed(seed)
    if model.main_input_name == "pixel_values":
        return torch.randn(2, *input_shape, generator=g)
    return torch.randint(0, model.config.vocab_size, (2, *input_shape), generator=g)


def reference(model: Any, x: torch.Tensor) -> torch.Tensor:
    """The model's output in the net's layout (units on axis 1)."""
    with torch.no_grad():
        out = model(x)
    for key in ("logits", "pooler_output", "last_hidden_state"):
        y = getattr(out, key, None)
        if y is not None:
            break
    return y.flatten(2) if y.dim() == 4 else y.transpose(1, 2) if y.dim() == 3 else y
