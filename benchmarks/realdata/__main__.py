"""``python -m benchmarks.realdata [OPTIONS]`` (from the repository's root): runs the benchmark."""

from __future__ import annotations

from .cli import main

main()
