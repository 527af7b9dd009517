"""`levit-bench train`: the paper's DeiT-style recipe with distillation, resumable, DDP-ready."""

from __future__ import annotations

import argparse
from pathlib import Path

from levit_bench.commands.common import print_json


def cmd_train(args: argparse.Namespace) -> int:
    import os

    from levit_bench import views
    from levit_bench.train.recipe import TrainConfig
    from levit_bench.train.trainer import Hooks, Trainer

    config = TrainConfig(
        model=args.model, data=Path(args.data), out=Path(args.out or f"runs/{args.model}"),
        teacher=args.teacher, distillation=args.distillation, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, min_lr=args.min_lr, warmup_epochs=args.warmup_epochs, weight_decay=args.weight_decay,
        smoothing=args.smoothing, mixup=args.mixup, cutmix=args.cutmix, drop_path=args.drop_path,
        clip_grad=args.clip_grad or None, distillation_alpha=args.distillation_alpha,
        distillation_tau=args.distillation_tau, ema=args.ema, ema_decay=args.ema_decay, workers=args.workers,
        seed=args.seed, steps_per_epoch=args.steps_per_epoch, stop_after=args.stop_after,
    )
    rank0 = int(os.environ.get("RANK", 0)) == 0
    hooks = Hooks()
    trainer = Trainer(config, resume=args.resume, hooks=hooks)  # bad data or model: refused before the bar
    with views.ProgressView("train", disable=not rank0) as progress:
        hooks.epoch_start = lambda epoch, steps: progress.start(steps, f"epoch {epoch}/{config.epochs}")
        hooks.step = lambda index, loss, lr: progress.update(index, info=f"loss {loss:.3f} lr {lr:.2e}")
        hooks.epoch_end = lambda row: progress.log(
            f"epoch {row['epoch']}: loss {row['loss']:.4f}, val top-1 {row['top1']:.1f}%, "
            f"top-5 {row['top5']:.1f}%, {row['images_per_s']:.0f} images/s")
        try:
            summary = trainer.run()
        except KeyboardInterrupt:
            if rank0:
                views.print_note(f"interrupted: {config.out}/latest.pth holds the last finished epoch; "
                                 "--resume continues from it")
            raise
    if rank0:
        if args.json:
            print_json(summary)
        else:
            views.print_note(f"best val top-1 {summary['best_top1']:.1f}%; checkpoints and log.jsonl in {config.out}")
    return 0


def register(commands) -> None:
    from levit_bench.train.distillation import MODES
    from levit_bench.train.recipe import TrainConfig

    d = argparse.Namespace(**TrainConfig.defaults())
    train = commands.add_parser(
        "train",
        help="train a model on an ImageFolder directory with the paper's recipe and distillation",
        description="Train on DIR/train/<class>/* and validate on DIR/val/<class>/* each epoch, with the "
        "LeViT paper's recipe as defaults (AdamW, lr 5e-4 x batch/512, weight decay 0.025, cosine "
        "schedule with 5 warm-up epochs, label smoothing 0.1, mixup 0.8 / CutMix 1.0, drop path per "
        "model, adaptive gradient clipping 0.02). LeViT's class head learns the labels and its "
        "distillation head the teacher. OUT/latest.pth (every epoch) and OUT/best.pth are native "
        "checkpoints every other command takes as --weights; OUT/log.jsonl has one line per epoch. "
        "For several processes run it under torchrun (gloo on CPU, nccl on CUDA).",
    )
    train.add_argument("--model", required=True, metavar="NAME")
    train.add_argument("--data", required=True, metavar="DIR", help="holds train/ and val/ ImageFolder trees")
    train.add_argument("--teacher", metavar="NAME[:WEIGHTS]", help="a registered model, with its checkpoint")
    train.add_argument("--distillation", choices=MODES,
                       help="hard (the teacher's argmax; default with a teacher), soft (KL at --distillation-tau) "
                       "or none (both heads learn the labels; default without a teacher)")
    train.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs} (the paper's)")
    train.add_argument("--batch-size", type=int, default=d.batch_size, help=f"per process (default {d.batch_size})")
    train.add_argument("--out", metavar="DIR", help="checkpoints and log (default runs/<model>)")
    train.add_argument("--resume", action="store_true", help="continue OUT/latest.pth exactly where it stopped")
    train.add_argument("--lr", type=float, help="default 5e-4 x global batch / 512")
    train.add_argument("--min-lr", type=float, default=d.min_lr)
    train.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs)
    train.add_argument("--weight-decay", type=float, default=d.weight_decay)
    train.add_argument("--smoothing", type=float, default=d.smoothing, help="label smoothing")
    train.add_argument("--mixup", type=float, default=d.mixup, help="mixup alpha (0: off)")
    train.add_argument("--cutmix", type=float, default=d.cutmix, help="CutMix alpha (0: off)")
    train.add_argument("--drop-path", type=float, help="default: the model's own (Table 2)")
    train.add_argument("--clip-grad", type=float, default=d.clip_grad, help="adaptive clipping factor (0: off)")
    train.add_argument("--distillation-alpha", type=float, default=d.distillation_alpha)
    train.add_argument("--distillation-tau", type=float, default=d.distillation_tau)
    train.add_argument("--ema", action="store_true", help="keep an EMA of the weights (saved as model_ema)")
    train.add_argument("--ema-decay", type=float, default=d.ema_decay)
    train.add_argument("--workers", type=int, default=d.workers, help="data loading processes per training process")
    train.add_argument("--seed", type=int, default=d.seed)
    train.add_argument("--steps-per-epoch", type=int, metavar="N", help="cap each epoch at N steps (quick runs)")
    train.add_argument("--stop-after", type=int, metavar="N",
                       help="stop after N epochs of the schedule (e.g. a time slot); --resume continues it")
    train.add_argument("--json", action="store_true", help="print the summary as JSON")
    train.set_defaults(handler=cmd_train)
