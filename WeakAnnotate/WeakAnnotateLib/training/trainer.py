"""The training loop the worker methods share: progress lines, checkpoints, DDP, validation, the model files.

The process that runs it is :mod:`WeakAnnotateLib.jobs.worker` (it reads the spec and looks the method up in
the registry); the contract a panel relies on is written there and in ``docs/training.md``.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic_files import atomic_output
from ..core.errors import InputError
from ..data.dataset import CropCache, CropDataset, DatasetFolder, object_bounds, read_reference
from ..evaluation.metrics import dice
from ..files.image_io import read_image
from ..networks.build import build_network
from ..networks.model_files import MODEL_FILE, MODEL_INFO
from ..networks.prediction import LoadedModel, predict_image, sliding_probability
from .job_spec import SGD_MOMENTUM, JobSpec, check_init_weights
from .progress import EXIT_CANCELLED, EXIT_DONE, Progress, StopRequest, atomic_json
from .recipe import MixedPrecision, RecipeWindows, lr_factor, sized_channels, uses_recipe_windows, window_transform


def _atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def initial_weights(net: Any, weights: Path, device: str) -> None:
    """Load a finished job's weights into ``net``; another network (channels, inputs) is refused by name."""
    import torch

    blob = torch.load(weights, map_location=device, weights_only=False)
    theirs = {k: tuple(v.shape) for k, v in blob["state_dict"].items()}
    mine = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    if mine != theirs:
        raise InputError(
            f"init_weights: {weights.parent} has another network (channels {blob['config'].get('channels')}, "
            f"{blob['config'].get('in_channels')} input channels); give a job with this spec's network."
        )
    net.load_state_dict(blob["state_dict"])


class Distributed:
    """torch.distributed when launched by torchrun (WORLD_SIZE > 1), a no-op otherwise."""

    def __init__(self, device: str) -> None:
        import torch

        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = device
        if self.world > 1:
            import torch.distributed as dist

            if device.startswith("cuda"):
                self.device = f"cuda:{self.local_rank}"
                torch.cuda.set_device(self.local_rank)
                backend = "nccl"
            else:
                backend = "gloo"
            dist.init_process_group(backend=backend)
            self.backend = backend
        else:
            self.backend = None

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def sum(self, *values: float) -> list[float]:
        if not self.enabled:
            return list(values)
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.cpu().tolist()

    def any(self, flag: bool) -> bool:
        return self.sum(1.0 if flag else 0.0)[0] > 0 if self.enabled else flag

    def close(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.destroy_process_group()


# what a job ran with before the recipe's fields existed: how a checkpoint without them resumes
PREVIOUS_RECIPE = {"schedule": "constant", "augmentation": "none", "foreground_fraction": 0.0}


class Trainer:
    """The training loop every worker method shares; ``method_class`` (a :class:`~.method.TrainingMethod`) and
    ``network`` ("unet_3d" | "unet_2.5d") come from the method's descriptor (the caller looks them up)."""

    def __init__(
        self,
        spec: JobSpec,
        split: dict[str, list[str]],
        dist: Distributed,
        progress: Progress,
        method_class: type,
        network: str = "unet_3d",
    ) -> None:

        self.spec = spec
        self.split = split
        self.dist = dist
        self.progress = progress
        self.output = spec.output_path
        self.dataset = DatasetFolder.load(spec.dataset_path)
        spacing = spec.spacing_mm if spec.spacing_mm > 0 else None
        self.cache = CropCache(self.dataset, self.output / "crops", padding_mm=spec.padding_mm, spacing_mm=spacing)
        self.method = method_class(spec, self.cache, split, self.output)
        self.config = {
            "in_channels": 2 if self.method.points_channel else 1,
            "channels": list(spec.channels) or sized_channels(spec.patch_size),
            "num_res_units": 1,
            "patch_size": list(spec.patch_size),
            "spacing_mm": spec.spacing_mm,
            "padding_mm": spec.padding_mm,
            "points_channel": self.method.points_channel,
            "sigma_mm": self.method.sigma_mm,
            "method": spec.method,
            **getattr(self.method, "network", {}),  # e.g. pet_box: SELU, z-scored input
        }
        if network == "unet_2.5d":  # any method may ask for the 2.5D network (box_prior's by default)
            self.config.update(network="unet_2.5d", num_res_units=2)
        # the shared recipe (training/recipe.py); a job checkpointed before it existed resumes with PREVIOUS_RECIPE
        self.recipe = {k: getattr(spec, k) for k in PREVIOUS_RECIPE}

    # -- data --
    def prepare_crops(self) -> None:
        """Crops for this rank's share of the cases (one case in memory at a time), then wait for all."""
        ids = self.split["train"] + self.split["validation"]
        mine = ids[self.dist.rank :: self.dist.world]
        for n, case_id in enumerate(mine):
            t0 = time.perf_counter()
            self.cache.prepare(self.dataset.case(case_id))
            self.progress.emit(
                "prepare", case=case_id, index=n + 1, total=len(mine), seconds=round(time.perf_counter() - t0, 3)
            )
        self.dist.barrier()

    def loader(self, round_index: int, epoch: int) -> Any:
        from torch.utils.data import DataLoader
        from torch.utils.data.distributed import DistributedSampler

        seed = self.spec.seed * 1000 + epoch * 10 + self.dist.rank
        recipe = uses_recipe_windows(self.recipe["foreground_fraction"], self.recipe["augmentation"])
        ds: Any = CropDataset(
            self.cache,
            self.split["train"],
            target=self.method.target,
            target_dir=self.method.target_dir(round_index),
            points_channel=self.method.points_channel,
            sigma_mm=self.method.sigma_mm,
            patch_size=None if recipe else self.spec.patch_size,  # the recipe cuts its own windows
            seed=seed,
            intensity=self.config.get("intensity", "percentile"),  # pet_box suv_zscore
        )
        if recipe:
            ds = RecipeWindows(
                ds,
                window_transform(
                    self.spec.patch_size,
                    foreground_fraction=self.recipe["foreground_fraction"],
                    augmentation=self.recipe["augmentation"],
                    spatial=self.method.spatial_augmentation,
                    extra_channels=self.method.points_channel,
                    seed=seed,
                ),
            )
        sampler = None
        if self.dist.enabled:
            sampler = DistributedSampler(
                ds,
                num_replicas=self.dist.world,
                rank=self.dist.rank,
                shuffle=True,
                seed=self.spec.seed,
                drop_last=False,
            )
            sampler.set_epoch(epoch)
        return DataLoader(
            ds,
            batch_size=self.spec.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            num_workers=0,
            drop_last=False,
        )

    def crop_input(self, case_id: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:

        ds = CropDataset(
            self.cache,
            [case_id],
            target="reference",
            points_channel=self.method.points_channel,
            sigma_mm=self.method.sigma_mm,
            intensity=self.config.get("intensity", "percentile"),  # pet_box suv_zscore
        )
        z = self.cache.load(case_id)
        x = ds.arrays(0)[0]
        return x, z.get("reference"), z

    def predict_crop(self, net: Any, case_id: str) -> np.ndarray:

        x, _, _ = self.crop_input(case_id)
        net.eval()
        prob = sliding_probability(net, x, tuple(self.spec.patch_size), self.dist.device)
        net.train()
        return prob

    def validate(self, net: Any) -> dict[str, Any]:
        """Dice of each validation crop against its reference (else its pseudo-label), at P ≥ 0.5."""

        per_case = {}
        for case_id in self.split["validation"]:
            prob = self.predict_crop(net, case_id)
            _, ref, z = self.crop_input(case_id)
            target = ref if ref is not None else z.get("pseudo")
            if target is None:
                continue
            per_case[case_id] = dice(target >= 0.5, prob >= 0.5)
        mean = float(np.mean(list(per_case.values()))) if per_case else None
        return {"val_dice": mean, "per_case": per_case}

    # -- run --
    def run(self, resume: bool) -> int:
        import torch
        from monai.losses import DiceLoss
        from torch.nn.parallel import DistributedDataParallel

        spec, dist = self.spec, self.dist
        t_start = time.time()
        torch.manual_seed(spec.seed + dist.rank)
        np.random.seed(spec.seed + dist.rank)
        net = build_network(self.config).to(dist.device)
        if not resume and hasattr(self.method, "initialise"):
            self.method.initialise(net)  # pet_box_mdice_ms: weights of a finished pet_box_dice job
        if not resume and spec.init_weights:  # the annotation loop's fine-tuning: the last model's weights
            initial_weights(net, check_init_weights(spec), dist.device)
        if spec.optimizer == "sgd":  # the pet_box paper's optimiser (lr 1e-5, momentum 0.9)
            optimiser = torch.optim.SGD(net.parameters(), lr=spec.learning_rate, momentum=SGD_MOMENTUM)
        else:
            optimiser = torch.optim.Adam(net.parameters(), lr=spec.learning_rate)
        ckpt_path = self.output / "checkpoints" / "last.pt"
        state = {
            "epoch": 0,
            "round": 0,
            "round_epoch": 0,
            "step": 0,
            "samples": 0,
            "history": [],
            "converged": False,
            "rounds": [],
            "seconds": 0.0,
            "recipe": dict(self.recipe),
            "budget_seconds": 0.0,  # training time counted against max_minutes (resumes add to it)
            "round_start_seconds": 0.0,  # budget_seconds when the current round began
            "budget_reached": False,
        }
        if resume:
            blob = torch.load(ckpt_path, map_location=dist.device, weights_only=False)
            net.load_state_dict(blob["model"])
            optimiser.load_state_dict(blob["optimiser"])
            state = blob["state"]
            torch.set_rng_state(blob["rng"])
            # a checkpoint from before the recipe resumes as it started; newer ones with their own recipe
            state.setdefault("recipe", dict(PREVIOUS_RECIPE))
            for key, value in {"budget_seconds": 0.0, "round_start_seconds": 0.0, "budget_reached": False}.items():
                state.setdefault(key, value)
            self.recipe = dict(state["recipe"])
        base_lr = [group["lr"] for group in optimiser.param_groups]
        if resume:
            base_lr = [group.get("initial_lr", group["lr"]) for group in optimiser.param_groups]
        for group, lr in zip(optimiser.param_groups, base_lr, strict=True):
            group["initial_lr"] = lr  # the schedule scales this; kept in the optimiser's state for a resume
        amp = MixedPrecision(spec.amp, dist.device)
        budget_s = spec.max_minutes * 60.0
        rounds = self.method.max_rounds
        model = DistributedDataParallel(net) if dist.enabled else net
        loss_fn = DiceLoss(sigmoid=True)
        total_epochs = spec.epochs * self.method.max_rounds
        self.progress.emit(
            "start",
            method=spec.method,
            device=dist.device,
            world_size=dist.world,
            backend=dist.backend,
            epochs=total_epochs,
            train_cases=self.split["train"],
            validation_cases=self.split["validation"],
            resumed_from_epoch=state["epoch"] if resume else None,
            spec=spec.to_json(),
            recipe=self.recipe,
            mixed_precision=amp.name,
            max_minutes=spec.max_minutes or None,
        )
        self.prepare_crops()
        if state["epoch"] == 0:
            self.method.prepare(dist.rank, dist.world, dist.barrier)

        epoch_times: list[float] = []
        t_budget = time.perf_counter() - state["budget_seconds"]  # the budget's clock, continued on a resume

        def budget_used() -> float:
            return time.perf_counter() - t_budget

        if budget_s > 0:
            self.method.out_of_budget = lambda: budget_used() >= budget_s  # the refinement between rounds stops too

        def round_deadline(round_index: int) -> float:
            """The budget's end of this round: an equal share of max_minutes per round, so that a multi-round
            method (the extreme-point network) refines its labels within the budget too."""
            return budget_s * (round_index + 1) / rounds

        while state["epoch"] < total_epochs and not state["converged"] and not state["budget_reached"]:
            epoch = state["epoch"] + 1
            round_index = state["round"]
            t0 = time.perf_counter()
            out_of_time = False
            self.method.epoch = epoch - 1  # 0-based, for methods with a per-epoch schedule (box_prior's t)
            loader = self.loader(round_index, epoch)
            steps = spec.steps_per_epoch or len(loader)
            round_steps = spec.epochs * steps
            losses: list[float] = []
            iterator = iter(loader)
            for step_in_epoch in range(1, steps + 1):
                try:
                    batch = next(iterator)
                except StopIteration:
                    iterator = iter(loader)
                    batch = next(iterator)
                x = batch["input"].to(dist.device)
                y = batch["target"].to(dist.device)
                progress = (state["round_epoch"] * steps + step_in_epoch - 1) / max(round_steps, 1)
                if budget_s > 0:
                    round_share = round_deadline(round_index) - state["round_start_seconds"]
                    elapsed = budget_used() - state["round_start_seconds"]
                    progress = max(progress, elapsed / max(round_share, 1e-9))
                factor = lr_factor(self.recipe["schedule"], progress)
                for group in optimiser.param_groups:
                    group["lr"] = group["initial_lr"] * factor
                optimiser.zero_grad()
                step_loss = getattr(self.method, "step_loss", None)  # a method with its own loss (pet_box)
                with amp.autocast():
                    loss = step_loss(model, x, y) if step_loss else loss_fn(model(x), y)
                amp.step(loss, optimiser)
                state["step"] += 1
                state["samples"] += int(x.shape[0]) * dist.world
                loss_value = dist.sum(float(loss.item()))[0] / dist.world
                if not math.isfinite(loss_value):  # every rank sees the same sum, so all stop together
                    raise InputError(
                        f"The loss became {loss_value} at epoch {epoch}, step {step_in_epoch}: training diverged "
                        "(lower learning_rate, or check the images for extreme values); no model was written."
                    )
                losses.append(loss_value)
                self.progress.emit(
                    "step",
                    epoch=epoch,
                    round=round_index + 1,
                    step=state["step"],
                    step_in_epoch=step_in_epoch,
                    steps=steps,
                    loss=loss_value,
                )
                if spec.fail_at_step and state["step"] >= spec.fail_at_step:
                    raise RuntimeError(f"injected failure at step {state['step']} (job spec fail_at_step)")
                if spec.step_delay_s > 0:
                    time.sleep(spec.step_delay_s)
                if dist.any(StopRequest.requested):
                    self.progress.emit(
                        "cancelled",
                        epoch=epoch,
                        step=state["step"],
                        last_checkpoint_epoch=state["epoch"] if ckpt_path.is_file() else None,
                        message="Stopped on request after the current step; resume continues from the last checkpoint.",
                    )
                    return EXIT_CANCELLED
                if budget_s > 0 and dist.any(budget_used() >= round_deadline(round_index)):
                    out_of_time = True  # every rank stops at the same step (the flag is all-reduced)
                    break

            val: dict[str, Any] = {"val_dice": None, "per_case": {}}
            if dist.rank == 0:
                val = self.validate(net)
            dist.barrier()

            state["round_epoch"] += 1
            round_info = None
            last_round = round_index + 1 >= self.method.max_rounds
            if out_of_time and last_round:
                state["budget_reached"] = True  # the model is written below, as after the last epoch
            elif (state["round_epoch"] >= spec.epochs or out_of_time) and self.method.max_rounds > 1:
                round_info = self.end_round(net, round_index)
                state["rounds"].append(round_info)
                state["round"] += 1
                state["round_epoch"] = 0
                state["round_start_seconds"] = budget_used()
                state["converged"] = round_info["converged"] or state["round"] >= self.method.max_rounds
            state["budget_seconds"] = budget_used()
            seconds = time.perf_counter() - t0
            epoch_times.append(seconds)
            state["epoch"] = epoch
            state["seconds"] += seconds
            remaining = (total_epochs - epoch) if not state["converged"] else 0
            summary = {
                "epoch": epoch,
                "epochs": total_epochs,
                "round": round_index + 1,
                "step": state["step"],
                "loss": float(np.mean(losses)) if losses else None,
                "val_dice": val["val_dice"],
                "val_per_case": val["per_case"],
                "seconds_per_epoch": round(seconds, 3),
                "eta_s": round(float(np.mean(epoch_times)) * remaining, 1),
                "learning_rate": optimiser.param_groups[0]["lr"],
            }
            if budget_s > 0:  # the budget ends the job sooner than the epochs when it is the tighter limit
                summary["eta_s"] = (
                    0.0
                    if state["budget_reached"]
                    else min(summary["eta_s"], round(max(budget_s - budget_used(), 0.0), 1))
                )
            state["history"].append({k: v for k, v in summary.items() if k != "val_per_case"})
            if dist.rank == 0:
                _atomic_torch_save(
                    {
                        "model": net.state_dict(),
                        "optimiser": optimiser.state_dict(),
                        "state": state,
                        "rng": torch.get_rng_state(),
                        "config": self.config,
                    },
                    ckpt_path,
                )
            self.progress.emit("epoch", **summary)
            if round_info is not None:
                self.progress.emit("round", **round_info)
            self.progress.emit("checkpoint", epoch=epoch, path=str(ckpt_path))

        if dist.rank == 0:
            self.finish(net, state, time.time() - t_start)
        dist.barrier()
        return EXIT_DONE

    def end_round(self, net: Any, round_index: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        change, count = self.method.end_round(
            round_index, lambda cid: self.predict_crop(net, cid), self.dist.rank, self.dist.world
        )
        change, count = self.dist.sum(change, count)
        self.dist.barrier()
        mean_change = change / count if count else 0.0
        return {
            "round": round_index + 1,
            "change": mean_change,
            "converged": bool(count) and mean_change < self.method.convergence,
            "seconds": round(time.perf_counter() - t0, 3),
            **self.method.round_details,
        }

    def finish(self, net: Any, state: dict[str, Any], seconds: float) -> None:
        """model.pt then model.json, each atomically: model.json is written last and marks a finished job."""
        import torch

        last = state["history"][-1] if state["history"] else {}
        val = self.validate(net)
        native = self.validate_native(net)
        entries = {c.id: c for c in self.dataset.cases}
        info = {
            "name": f"{self.output.name} ({self.spec.method.replace('_', ' ')})",
            "method": self.spec.method,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "hyper_parameters": self.spec.to_json(),
            "network": {"type": "monai.networks.nets.UNet", **self.config},
            "data": {
                "dataset": str(self.spec.dataset_path.resolve()),
                "train_cases": [
                    {"id": c, "image": entries[c].image, "target": self.method.target_name} for c in self.split["train"]
                ],
                "validation_cases": self.split["validation"],
                "samples_seen": state["samples"],
                "steps": state["step"],
            },
            "training": {
                "epochs_completed": state["epoch"],
                "rounds": state["rounds"],
                "seconds": round(state["seconds"], 2),
                "wall_seconds": round(seconds, 2),
                "device": self.dist.device,
                "world_size": self.dist.world,
                "final_loss": last.get("loss"),
                "torch": torch.__version__,
                "recipe": dict(self.recipe),
                "mixed_precision": MixedPrecision(self.spec.amp, self.dist.device).name,
                "max_minutes": self.spec.max_minutes or None,
                "budget_reached": bool(state.get("budget_reached")),
                "training_seconds": round(state.get("budget_seconds", 0.0), 2),  # the loop, what the budget counts
                "steps_per_second": round(state["step"] / state["seconds"], 3) if state["seconds"] else None,
            },
            "validation": {"dice_crop": val["val_dice"], "per_case_crop": val["per_case"], **native},
            "history": state["history"],
        }
        _atomic_torch_save({"state_dict": net.state_dict(), "config": self.config}, self.output / MODEL_FILE)
        atomic_json(info, self.output / MODEL_INFO)
        self.progress.emit(
            "done",
            model=str(self.output / MODEL_INFO),
            val_dice=val["val_dice"],
            val_dice_native=native.get("dice_native"),
            epochs_completed=state["epoch"],
            seconds=round(seconds, 2),
            budget_reached=bool(state.get("budget_reached")),
        )

    def validate_native(self, net: Any) -> dict[str, Any]:
        """Dice on the original image grid (the number a user cares about) for validation cases with a reference."""

        loaded = LoadedModel(net, self.config, {"name": "validation"}, self.output)
        per_case = {}
        net.eval()
        for case_id in self.split["validation"]:
            entry = self.dataset.case(case_id)
            if not entry.reference:
                continue
            image = read_image(self.dataset.path(entry.image))
            lo, hi, points = object_bounds(self.dataset, entry, image)
            if points is None:
                points = image.geometry.index_to_ras(np.stack([lo, hi]))
            mask, _ = predict_image(loaded, image, points)
            per_case[case_id] = dice(read_reference(self.dataset, entry, image.geometry), mask)
        net.train()
        mean = float(np.mean(list(per_case.values()))) if per_case else None
        return {"dice_native": mean, "per_case_native": per_case}
