"""The `scbloss` command: data preparation now; training and evaluation register here as they land."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .data.records import DatasetError


def _data_download(args: argparse.Namespace) -> int:
    from .data.prepare import prepare

    folder = prepare(args.dataset, Path(args.root), mirror=args.mirror, existing=args.existing)
    print(f"{args.dataset}: ready at {folder}")
    return 0


def _data_toy(args: argparse.Namespace) -> int:
    from .data.toy import ToyConfig, generate_toy

    config = ToyConfig(train_images=args.images, test_images=args.test_images, seed=args.seed)
    print(f"toy dataset written to {generate_toy(Path(args.out), config)}")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from .data.check import check_folder, summarize

    found, problems = check_folder(Path(args.folder))
    for name, data in found:
        print(f"## {name}: {len(data.records)} images, "
              f"{sum(1 for r in data.records if len(r) == 0)} without objects, {data.num_classes} classes")
        print(summarize(data).to_string())
        print()
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems or not found else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scbloss", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="obtain, generate and check datasets").add_subparsers(
        dest="data_command", required=True
    )
    download = data.add_parser("download", help="download, verify and extract VOC or COCO")
    download.add_argument("--dataset", choices=["voc", "coco"], required=True)
    download.add_argument("--root", default="data", help="folder for archives and the extracted dataset")
    download.add_argument("--mirror", help="base URL replacing the official host (same folder structure)")
    download.add_argument("--existing", type=Path, help="use this already-extracted folder instead of downloading")
    download.set_defaults(handler=_data_download)

    toy = data.add_parser("toy", help="generate the toy dataset (VOC and COCO layouts)")
    toy.add_argument("--out", required=True)
    toy.add_argument("--seed", type=int, default=0)
    toy.add_argument("--images", type=int, default=320, help="training images")
    toy.add_argument("--test-images", type=int, default=120)
    toy.set_defaults(handler=_data_toy)

    check = data.add_parser("check", help="read a dataset folder whole; report counts and problems")
    check.add_argument("folder")
    check.set_defaults(handler=_data_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.handler(args)
    except (DatasetError, FileNotFoundError, FileExistsError, ValueError, RuntimeError) as error:
        print(f"scbloss: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
