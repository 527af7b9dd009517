"""The training loop: data, model, teacher, recipe, checkpoints, resume, DDP.

One process per device; under `torchrun` (RANK / WORLD_SIZE / LOCAL_RANK in the environment)
the model is wrapped in DistributedDataParallel (nccl on CUDA, gloo on CPU) and each process
reads its shard. Checkpoints (`latest.pth` every epoch, `best.pth` on a new best top-1) are
written atomically by rank 0 in the project's native layout, so `export`, `run` and `eval` take
them as `--weights`; they also hold what `--resume` needs to continue exactly: optimizer,
GradScaler, EMA, epoch, step and every RNG state. Shuffling is seeded per epoch, so a resumed
run draws the same batches as the uninterrupted one.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from levit_bench.errors import LevitBenchError
from levit_bench.models.checkpoints import NATIVE_FORMAT
from levit_bench.registry import create_model, get_spec
from levit_bench.train import data
from levit_bench.train.distillation import DistillationLoss
from levit_bench.train.evaluate import evaluate_module
from levit_bench.train.mixup import Mixup
from levit_bench.train.recipe import TrainConfig, WeightEma, adaptive_clip_grad, learning_rate, parameter_groups
from levit_bench.workdir import atomic_path

LATEST, BEST, LOG = "latest.pth", "best.pth", "log.jsonl"


@dataclass
class Hooks:
    """What the command shows while training (rank 0 only)."""

    epoch_start: Callable[[int, int], None] = lambda epoch, steps: None
    step: Callable[[int, float, float], None] = lambda step, loss, lr: None
    epoch_end: Callable[[dict], None] = lambda row: None


def _rng_state() -> dict:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, python_keys, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": list(python_keys) + [version],
        "python_gauss": gauss,
        "numpy": [kind, keys.tolist(), position, has_gauss, cached],
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    *keys, version = state["python"]
    random.setstate((version, tuple(keys), state["python_gauss"]))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, cached))


def _teacher(spec: str, classes: int, device: torch.device) -> tuple[nn.Module, int]:
    name, _, weights = spec.partition(":")
    model, _ = create_model(name, weights=weights or None, num_classes=classes)
    if getattr(model, "num_classes", classes) != classes:
        raise LevitBenchError(f"the teacher {name} has {model.num_classes} classes, the data {classes}")
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device).eval(), get_spec(name).resolution


def evaluate(model: nn.Module, loader, device: torch.device) -> tuple[float, float]:
    """Top-1 and top-5 (%) in eval mode (LeViT: the average of its heads); the mode is restored."""
    was_training = model.training
    accuracy = evaluate_module(model, loader, device)
    model.train(was_training)
    return accuracy.top1, accuracy.top5


class Trainer:
    def __init__(self, config: TrainConfig, resume: bool = False, hooks: Hooks | None = None):
        self.config, self.hooks = config, hooks or Hooks()
        self.rank, self.world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            if self.device.type == "cpu":
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.world))
        self.amp = self.device.type == "cuda" if config.amp is None else config.amp
        if self.amp and self.device.type != "cuda":
            raise LevitBenchError("mixed precision (--amp) is for CUDA devices")
        torch.manual_seed(config.seed + self.rank)
        random.seed(config.seed + self.rank)
        np.random.seed(config.seed + self.rank)

        spec = get_spec(config.model)
        self.spec = spec
        root = Path(config.data)
        self.train_set = data.ImageFolder(root / "train", data.train_transform(spec.resolution, spec.preprocessing))
        if len(self.train_set.classes) < 2:  # one class is learnt by a constant: 100% that means nothing
            raise LevitBenchError(f"{root}/train has {len(self.train_set.classes)} class; training needs at least 2")
        self.val_set = data.ImageFolder(root / "val", data.eval_transform(spec.preprocessing))
        if self.val_set.classes != self.train_set.classes:
            raise LevitBenchError(f"{root}/train and {root}/val have different classes")
        self.classes = self.train_set.classes
        model = spec.build(num_classes=len(self.classes), drop_path=config.drop_path)
        self.model = model.to(self.device).train()
        self.ema = WeightEma(self.model, config.ema_decay) if config.ema else None
        global_batch = config.batch_size * self.world
        self.base_lr = config.lr if config.lr is not None else 5e-4 * global_batch / 512
        self.optimizer = torch.optim.AdamW(parameter_groups(self.model, config.weight_decay), lr=self.base_lr)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        mode = config.distillation or ("hard" if config.teacher else "none")
        teacher, teacher_resolution = (_teacher(config.teacher, len(self.classes), self.device)
                                       if config.teacher and mode != "none" else (None, None))
        self.criterion = DistillationLoss(mode, teacher, config.distillation_alpha, config.distillation_tau,
                                          teacher_resolution)
        self.mixup = Mixup(len(self.classes), config.mixup, config.cutmix, smoothing=config.smoothing)
        self.net = (nn.parallel.DistributedDataParallel(self.model, device_ids=[local_rank] if self.device.type == "cuda" else None)
                    if self.world > 1 else self.model)
        self.epoch, self.step, self.best_top1 = 0, 0, -1.0
        self.out = Path(config.out)
        if resume:
            self._resume()
        elif self.rank == 0 and (self.out / LATEST).exists():
            raise LevitBenchError(f"{self.out} already holds a run: --resume to continue it, or another --out")

    # ---- checkpoints --------------------------------------------------------------------------

    def _state(self) -> dict:
        state = {
            "format": NATIVE_FORMAT, "model_name": self.spec.name, "num_classes": str(len(self.classes)),
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "classes": list(self.classes),
            "training": {
                "epoch": self.epoch, "step": self.step, "best_top1": self.best_top1,
                "config": self.config.as_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": _rng_state(), "world_size": self.world,
            },
        }
        if self.ema is not None:
            state["model_ema"] = {k: v.detach().cpu() for k, v in self.ema.module.state_dict().items()}
        return state

    def _save(self, name: str, state: dict) -> None:
        with atomic_path(self.out / name) as tmp:
            torch.save(state, tmp)

    def _resume(self) -> None:
        path = self.out / LATEST
        if not path.is_file():
            raise LevitBenchError(f"nothing to resume: {path} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("model_name") != self.spec.name or state.get("classes") != list(self.classes):
            raise LevitBenchError(f"{path} is a run of {state.get('model_name')} on other classes; it cannot continue here")
        training = state["training"]
        if training["world_size"] != self.world:
            raise LevitBenchError(f"{path} was trained by {training['world_size']} processes; resume with as many")
        self.model.load_state_dict(state["state_dict"])
        if self.ema is not None and "model_ema" in state:
            self.ema.module.load_state_dict(state["model_ema"])
        self.optimizer.load_state_dict(training["optimizer"])
        self.scaler.load_state_dict(training["scaler"])
        self.epoch, self.step, self.best_top1 = training["epoch"], training["step"], training["best_top1"]
        if self.world == 1:  # each rank's generators are its own; one process restores them exactly
            _set_rng_state(training["rng"])

    # ---- the loop -----------------------------------------------------------------------------

    def _loader(self, dataset, train: bool, epoch: int):
        return data.make_loader(dataset, self.config.batch_size, train=train, workers=self.config.workers,
                                seed=self.config.seed * 100_003 + epoch, distributed=train and self.world > 1)

    def _train_epoch(self, loader, steps: int, total_steps: int, warmup_steps: int) -> tuple[float, float]:
        cfg = self.config
        losses, images_seen, started = [], 0, time.perf_counter()
        for index, (images, labels) in enumerate(loader):
            if index >= steps:
                break
            lr = learning_rate(self.step, total_steps, warmup_steps, self.base_lr, cfg.warmup_lr, cfg.min_lr)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            images, labels = images.to(self.device), labels.to(self.device)
            images, targets = self.mixup(images, labels)
            with torch.autocast(self.device.type, enabled=self.amp):
                loss = self.criterion(images, self.net(images), targets)
            if not torch.isfinite(loss):
                raise LevitBenchError(f"the loss is {float(loss.detach())} at step {self.step}: lower --lr")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.clip_grad:
                self.scaler.unscale_(self.optimizer)
                adaptive_clip_grad(self.model.parameters(), cfg.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(self.model)
            self.step += 1
            losses.append(float(loss.detach()))
            images_seen += len(labels)
            if self.rank == 0:
                self.hooks.step(index + 1, losses[-1], lr)
        seconds = time.perf_counter() - started
        return sum(losses) / len(losses), images_seen * self.world / seconds

    def run(self) -> dict:
        cfg = self.config
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        per_epoch = len(self._loader(self.train_set, True, 0))
        steps = min(per_epoch, cfg.steps_per_epoch) if cfg.steps_per_epoch else per_epoch
        if steps == 0:
            raise LevitBenchError(f"{cfg.data}/train has fewer images than one batch of {cfg.batch_size}")
        total_steps, warmup_steps = steps * cfg.epochs, steps * cfg.warmup_epochs
        val_loader = data.make_loader(self.val_set, cfg.batch_size, train=False, workers=cfg.workers, seed=cfg.seed)
        row = {}
        last = min(cfg.epochs, cfg.stop_after) if cfg.stop_after else cfg.epochs
        while self.epoch < last:
            loader = self._loader(self.train_set, True, self.epoch)
            if hasattr(loader.sampler, "set_epoch"):
                loader.sampler.set_epoch(self.epoch)
            if self.rank == 0:
                self.hooks.epoch_start(self.epoch + 1, steps)
            loss, throughput = self._train_epoch(loader, steps, total_steps, warmup_steps)
            top1, top5 = evaluate(self.model, val_loader, self.device)
            self.epoch += 1
            row = {"epoch": self.epoch, "step": self.step, "loss": loss, "lr": self.optimizer.param_groups[0]["lr"],
                   "top1": top1, "top5": top5, "images_per_s": throughput}
            if self.ema is not None:
                row["top1_ema"], row["top5_ema"] = evaluate(self.ema.module, val_loader, self.device)
            best = top1 > self.best_top1
            self.best_top1 = max(self.best_top1, top1)
            if self.rank == 0:
                state = self._state()
                self._save(LATEST, state)
                if best:
                    self._save(BEST, state)
                with (self.out / LOG).open("a") as log:
                    log.write(json.dumps(row) + "\n")
                self.hooks.epoch_end(row)
        if self.world > 1:
            dist.barrier()
        return {**row, "best_top1": self.best_top1, "out": str(self.out), "finished": self.epoch >= cfg.epochs}
