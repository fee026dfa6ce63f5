"""autofusion weights pull|list."""

from __future__ import annotations

import click
from rich.table import Table

from autofusion.cli.base import Group, _console
from autofusion.lazy import LazyImport

lookup = LazyImport("autofusion.models.weights")


@click.group(cls=Group)
def weights() -> None:
    """Pretrained weights: download them where a network exists, list what is cached.
    A search never downloads: it reads local folders and these caches only."""


@weights.command("pull")
@click.argument("names", nargs=-1, required=True)
def weights_pull(names: tuple[str, ...]) -> None:
    """Download NAMES into the libraries' own caches (HF_HOME, TORCH_HOME): hub repositories
    (bert-base-uncased, openai/clip-vit-base-patch32, facebook/wav2vec2-base), timm:NAME
    (timm:resnet18.a1_in1k) or torchvision:NAME (torchvision:resnet18)."""
    for name in names:
        click.echo(f"{name}: {lookup.pull(name)}")


@weights.command("list")
def weights_list() -> None:
    """What is cached, with sizes (the Hugging Face hub cache and the torch hub cache)."""
    rows = lookup.cached()
    table = Table(title="cached weights", title_justify="left")
    for col in ("cache", "name", "size"):
        table.add_column(col, justify="right" if col == "size" else "left")
    for r in rows:
        table.add_row(r.cache, r.name, f"{r.size / 2**20:.1f} MiB")
    console = _console()
    console.print(table)
    console.print(f"{len(rows)} cached (Hugging Face: {lookup.hf_hub_cache()}; torch hub: "
                  f"{lookup.torch_hub_checkpoints()}); fetch more with: autofusion weights pull NAME", highlight=False)
