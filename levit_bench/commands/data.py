"""`levit-bench data synth`: a learnable synthetic ImageFolder dataset, for trying the trainer."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_synth(args: argparse.Namespace) -> int:
    from levit_bench import views
    from levit_bench.train.synth import SynthOptions, check, generate, image_count

    options = SynthOptions(out=Path(args.out).expanduser(), classes=args.classes, per_class=args.per_class,
                           val_per_class=args.val_per_class, size=args.size, seed=args.seed, force=args.force)
    check(options)  # before the progress bar: a refusal is one line and nothing else
    with views.ProgressView(f"drawing {options.classes} classes", total=image_count(options)) as progress:
        out = generate(options, on_image=progress.advance)
    views.print_note(f"{image_count(options)} images of {options.classes} classes in {out}/train "
                     f"({options.per_class} per class) and {out}/val ({options.val_per_class} per class)")
    return 0


def register(commands) -> None:
    from levit_bench.train.synth import SHAPES, max_classes

    data = commands.add_parser(
        "data",
        help="datasets: draw a synthetic one (`data synth`)",
        description="Dataset tools. `levit-bench data synth` writes a small ImageFolder dataset "
        "that a LeViT can learn in a few hundred steps on a CPU, to try `train` and `eval` "
        "without ImageNet.",
    )
    actions = data.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    synth = actions.add_parser(
        "synth",
        help="write a procedurally drawn, learnable ImageFolder dataset",
        description="Write DIR/train/<class>/*.png and DIR/val/<class>/*.png. Each class is one "
        f"combination of a shape ({', '.join(SHAPES)}) and a colour family, named like "
        "00-red-circle; shapes and colours both repeat across classes, so a model needs both. "
        "Each image places its object at a random position, scale and rotation, in a jittered "
        "shade, over a random noisy background with a grey distractor shape. The same --seed "
        "writes the same bytes. The dataset is written beside DIR and renamed into place when "
        "complete, so an interrupted run leaves nothing behind.",
    )
    synth.add_argument("--out", required=True, metavar="DIR", help="the dataset directory to create")
    synth.add_argument("--classes", type=int, default=10, metavar="N",
                       help=f"number of classes, 2 to {max_classes()} (default 10)")
    synth.add_argument("--per-class", type=int, default=100, metavar="N",
                       help="training images per class (default 100)")
    synth.add_argument("--val-per-class", type=int, default=20, metavar="M",
                       help="validation images per class (default 20)")
    synth.add_argument("--size", type=int, default=224, metavar="PX",
                       help="image side in pixels (default 224; eval and train resize anyway)")
    synth.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    synth.add_argument("--force", action="store_true",
                       help="replace DIR if it already holds a dataset (a directory with other "
                       "contents is never replaced)")
    synth.set_defaults(handler=cmd_synth)
