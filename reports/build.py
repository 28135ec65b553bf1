"""Build every report page from the result tables committed under reports/: one self-contained HTML page per
experiment, written to reports/build/ (git-ignored).

    python reports/build.py                  # every page whose tables are here
    python reports/build.py fashion-bench    # only the pages named
    python reports/build.py --out DIR        # somewhere else

The pages are not committed: each inlines plotly.js (~4.7 MB), and a page is a pure function of its tables (the
same tables give the same bytes), so the tables, the write-ups and the scripts that made them are what git keeps.
An experiment's make.sh reruns it from scratch and then calls this script for its page.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from raymeta.errors import RaymetaError
from raymeta.io.progress import Progress
from raymeta.stages.report import report_tables

REPORTS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Page:
    """One page: its title and the tables it is drawn from (paths relative to reports/)."""

    title: str
    tables: tuple[str, ...]
    made_by: str


def uniform_run_tables() -> tuple[str, ...]:
    """The deploy page's uniformly trained run is fashion-bench's seed 0 (deploy-fashion/make.sh copies it), so
    its rows are read from there rather than kept twice. ``prior.parquet`` is left out: bench_table.py adds it to
    that folder for the bench page, and the deploy page never showed the prior."""
    folder = REPORTS / "fashion-bench" / "seed0"
    return tuple(f"fashion-bench/seed0/{p.name}" for p in sorted(folder.glob("*.parquet")) if p.name != "prior.parquet")


PAGES = {
    "digits-resnet20": Page(
        "raymeta: digits, ResNet-20 (jobs/quickstart.yaml)", ("digits-resnet20/tables",), "digits-resnet20/make.sh"
    ),
    "fashion-full": Page(
        "raymeta: any width at full-network scale, Fashion-MNIST (jobs/fashion_mnist_full.yaml), ResNet-20",
        ("fashion-full/seed0", "fashion-full/seed1"),
        "fashion-full/make.sh",
    ),
    "fashion-bench": Page(
        "raymeta: metamorphosis on Fashion-MNIST (jobs/fashion_mnist_bench.yaml), ResNet-20",
        ("fashion-bench/seed0", "fashion-bench/seed1", "fashion-bench/paper-rows"),
        "fashion-bench/make.sh",
    ),
    "fashion-ablation": Page(
        "raymeta: paper Table 1 ablation on Fashion-MNIST (jobs/fashion_mnist_bench.yaml), ResNet-20",
        ("fashion-ablation/seed0", "fashion-ablation/seed1"),
        "fashion-ablation/make.sh",
    ),
    "recipe-protocol": Page(
        "raymeta: the papers' recipe on a CPU protocol (jobs/fashion_mnist_recipe.yaml), ResNet-32",
        ("recipe-protocol/seed0", "recipe-protocol/seed1"),
        "recipe-protocol/make.sh",
    ),
    "deploy-fashion": Page(
        "Deploy to a budget: Fashion-MNIST", ("deploy-fashion/tables", *uniform_run_tables()), "deploy-fashion/make.sh"
    ),
}


def build(names: list[str], out: Path, progress: Progress) -> list[Path]:
    """Write ``out/NAME.html`` for each page named; a page whose tables are not committed is skipped, saying
    which script makes them. Returns the pages written."""
    unknown = [name for name in names if name not in PAGES]
    if unknown:
        raise RaymetaError(f"unknown report page(s) {', '.join(unknown)}; the pages are {', '.join(PAGES)}")
    written = []
    for name in names:
        page = PAGES[name]
        missing = [table for table in page.tables if not (REPORTS / table).exists()]
        if missing:
            progress(
                f"{name}: skipped, its tables {', '.join(missing)} are not in reports/ "
                f"(bash reports/{page.made_by} makes them)"
            )
            continue
        written.append(
            report_tables(
                [str(REPORTS / table) for table in page.tables], out / f"{name}.html", progress, title=page.title
            )
        )
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pages", nargs="*", help=f"pages to build (default: all of {', '.join(PAGES)})")
    parser.add_argument("--out", type=Path, default=REPORTS / "build", help="folder for the pages (reports/build)")
    args = parser.parse_args(argv)
    progress = Progress()
    try:
        written = build(args.pages or list(PAGES), args.out, progress)
    except RaymetaError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.pages and len(written) < len(args.pages):
        return 1  # a page asked for by name could not be built
    return 0


if __name__ == "__main__":
    sys.exit(main())
