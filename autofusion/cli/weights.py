"""autofusion weights pull|add|list|recommended."""

from __future__ import annotations

import click
from rich.table import Table

from autofusion.cli.base import Group, _console
from autofusion.errors import ConfigError
from autofusion.lazy import LazyImport

shelf = LazyImport("autofusion.models.shelf")
lookup = LazyImport("autofusion.models.weights")
backbones = LazyImport("autofusion.models.backbones")
caches = LazyImport("autofusion.home")


@click.group(cls=Group)
def weights() -> None:
    """Pretrained weights: download them where a network exists, register copies, list them.
    A search never downloads: it reads the shelf, local folders and the libraries' caches."""


@weights.command("pull")
@click.argument("names", nargs=-1)
@click.option("--recommended", is_flag=True, help="The recommended backbones of a device (autofusion weights "
              "recommended): what the built-in and assembled spaces start from.")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default=None,
              help="With --recommended: whose set (default: this machine's).")
def weights_pull(names: tuple[str, ...], recommended: bool, device: str | None) -> None:
    """Download NAMES into the libraries' own caches (HF_HOME, TORCH_HOME) and note them on the
    shelf: hub repositories (bert-base-uncased, openai/clip-vit-base-patch32), timm:NAME
    (timm:efficientnet_lite0) or torchvision:NAME (torchvision:resnet18)."""
    if recommended:
        picked = backbones.recommended(device or backbones.device())
        names = tuple(dict.fromkeys([*names, *(b.weights for b in picked)]))
    elif device is not None:
        raise click.UsageError("--device picks the recommended set: give --recommended too")
    if not names:
        raise click.UsageError("give NAMES or --recommended")
    for name in names:
        row = shelf.pull(name)
        click.echo(f"{name}: {row.path} ({_size(row.size)}{', read by ' + row.encoder if row.encoder else ''})")


@weights.command("add")
@click.argument("name")
@click.argument("path", type=click.Path())
@click.option("--in-place", is_flag=True, help="Register PATH where it is instead of copying it onto the shelf.")
def weights_add(name: str, path: str, in_place: bool) -> None:
    """Register weights obtained some other way under their hub or timm NAME: a Hugging Face
    folder (sentence-transformers/all-MiniLM-L6-v2 PATH) or a timm state dict
    (timm:efficientnet_lite0 FILE). Spaces and searches then find them by that name."""
    row = shelf.add(name, path, in_place=in_place)
    click.echo(f"{name}: {row.use} ({row.encoder}), {_size(row.size)}, {row.source}; on the shelf as {row.path}")


@weights.command("list")
def weights_list() -> None:
    """The shelf (added and pulled weights) and what else the libraries' caches hold, with sizes."""
    rows = shelf.listing()
    table = Table(title="pretrained weights", title_justify="left")
    for col in ("name", "encodes", "size", "from", "recommended"):
        table.add_column(col, justify="right" if col == "size" else "left")
    for r in rows:
        table.add_row(r.name, f"{r.use} ({r.encoder})" if r.encoder else "-", _size(r.size), r.source,
                      ", ".join(r.recommended) or "-")
    console = _console()
    console.print(table)
    on_shelf = sum(1 for r in rows if r.source == "pulled" or r.source.startswith("added"))
    console.print(f"{on_shelf} on the shelf ({caches.shelf_dir()}), {len(rows) - on_shelf} more in the caches "
                  f"(Hugging Face: {caches.hf_hub_cache()}; torch hub: {caches.torch_hub_checkpoints()}); fetch the "
                  "recommended set with: autofusion weights pull --recommended", highlight=False)


@weights.command("recommended")
def weights_recommended() -> None:
    """The recommended backbones per use and device, and whether each is here."""
    table = Table(title="recommended backbones", title_justify="left")
    for col in ("use", "device", "weights", "encoder", "about", "here"):
        table.add_column(col)
    for b in backbones.RECOMMENDED:
        try:
            here = lookup.origin(lookup.locate(b.weights))
        except ConfigError:
            here = "-"
        table.add_row(b.use, b.device, b.weights, b.encoder, b.about, here)
    _console().print(table)


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
