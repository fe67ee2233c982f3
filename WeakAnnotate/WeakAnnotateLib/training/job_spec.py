"""The training job spec: one JSON file that says everything a run depends on.

Why every hyper-parameter lives in the spec (and is copied into ``model.json``): opaque training — settings hidden in
a GUI and not persisted — is the complaint users have about today's tools. A spec is validated completely
before anything starts, and each problem is reported with the name of the field (``epochs: expected an
integer, got "two"``), so a panel can point at the widget and the CLI at the line.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..data.dataset import DatasetFolder
from .recipe import AUGMENTATIONS, SCHEDULES

DEVICES = ("auto", "cpu", "cuda")
NETWORKS = ("", "unet_3d", "unet_2.5d")
OPTIMIZERS = ("adam", "sgd")
SGD_MOMENTUM = 0.9  # optimizer "sgd": the pet_box paper's momentum (Afshari et al.: SGD, lr 1e-5, momentum 0.9)


@dataclass
class JobSpec:
    """A training job: the fields every method shares, and the method's own section in ``options``.

    Paths may be relative to the spec file's folder. In JSON the section is an object named after the method
    (``{"method": "weak_net", ..., "weak_net": {"weak_net_lambda": 0.0001}}``); its dataclass is the method's
    (``methods/<name>/descriptor.py``). Loading a file, and reading the previous flat layout, is
    :mod:`WeakAnnotateLib.jobs.spec`'s work: it knows the methods.
    """

    dataset: str  # dataset folder (with dataset.json)
    output: str  # job folder: progress.jsonl, checkpoints/, model.pt + model.json
    method: str = "full_supervision"  # a training method of the registry (weakannotate methods)
    epochs: int = 10  # epochs (per round for the extreme-point network)
    learning_rate: float = 1e-3
    batch_size: int = 2
    patch_size: list[int] = field(default_factory=lambda: [48, 48, 48])  # training window, voxels (k, j, i)
    spacing_mm: float = 2.0  # crops are resampled to this isotropic spacing (0 = keep the image's)
    padding_mm: float = 20.0  # paper: the points' box + 20 mm
    # U-Net features per level; []: sized for the patch (recipe.sized_channels)
    channels: list[int] = field(default_factory=lambda: [8, 16, 32])
    # "unet_3d", or "unet_2.5d" (residual 2D U-Net on 3 neighbouring slices, the tightness-prior paper's);
    # "" = the method's own (its descriptor's network)
    network: str = ""
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda" or "cuda:N"
    seed: int = 0
    validation_cases: list[str] = field(default_factory=list)  # ids; empty: the last validation_fraction
    validation_fraction: float = 0.25
    train_cases: list[str] = field(default_factory=list)  # ids; empty: every case not in validation
    steps_per_epoch: int = 0  # 0: one pass over the training cases
    # optimiser of every method: "adam" (default: converges in the few hundred steps a CPU run affords) or "sgd"
    # (momentum SGD_MOMENTUM; the pet_box paper's choice, with learning_rate 1e-5 and ~100 epochs)
    optimizer: str = "adam"
    # a finished job (its folder, model.pt or model.json) whose weights start this one, same network; "" = random.
    # Why common: the annotation loop fine-tunes every method's model from its last weights (docs/annotation_loop.md)
    init_weights: str = ""
    # the recipe every method shares (training/recipe.py); a job checkpointed before these existed resumes
    # without them ("constant", "none", 0.0), as it started
    schedule: str = "poly"  # learning rate: "poly" (nnU-Net's), "cosine" or "constant", per round
    augmentation: str = "standard"  # "standard" (spatial + intensity), "flips" or "none"
    foreground_fraction: float = 0.5  # windows centred on the object (RandCropByPosNegLabeld); 0: uniform windows
    amp: bool = True  # mixed precision on CUDA (ignored on the CPU)
    max_minutes: float = 0.0  # wall-clock training budget; > 0: stop at the end of the step that passes it
    # test hooks (documented; never needed in real use)
    fail_at_step: int = 0  # > 0: raise an error at this global step (a crashing worker)
    step_delay_s: float = 0.0  # sleep per step (so that a test can cancel mid-epoch)
    options: Any = None  # the method's section (its descriptor's options dataclass); None: it has none
    spec_path: str = ""  # where the spec was read from (set by the loader)

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON: the common fields, then the method's section under its name."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("options", "spec_path")}
        d = json.loads(json.dumps(d))  # copies of the lists
        if self.options is not None:
            d[self.method] = asdict(self.options)
        return d

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        if not p.is_absolute() and self.spec_path:
            p = Path(self.spec_path).parent / p
        return p

    @property
    def dataset_path(self) -> Path:
        return self.resolve(self.dataset)

    @property
    def output_path(self) -> Path:
        return self.resolve(self.output)


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin is list:
        (inner,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_type_ok(v, inner) for v in value)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    return True


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is list:
        return f"a list of {_type_name(typing.get_args(annotation)[0]).split(' ', 1)[1]}s"
    return _TYPE_NAMES.get(annotation, str(annotation))


def checked_fields(doc: Any, spec_class: type, what: str = "job spec") -> dict[str, Any]:
    """The fields of a JSON job spec for the dataclass ``spec_class``: unknown, missing and mistyped fields are
    rejected with the field's name first; ints given for floats become floats."""
    if not isinstance(doc, dict):
        raise InputError(f"The {what} must be a JSON object of fields.")
    hints = typing.get_type_hints(spec_class)
    known = {f.name: f for f in fields(spec_class) if f.name not in ("spec_path", "options")}
    unknown = sorted(set(doc) - set(known))
    if unknown:
        raise InputError(f"{unknown[0]}: unknown {what} field; known fields are {', '.join(known)}.")
    for name, f in known.items():
        if name not in doc:
            if f.default is MISSING and f.default_factory is MISSING:
                raise InputError(f"{name}: required {what} field is missing.")
            continue
        if not _type_ok(doc[name], hints[name]):
            raise InputError(f"{name}: expected {_type_name(hints[name])}, got {json.dumps(doc[name])}.")
        values = doc[name] if isinstance(doc[name], list) else [doc[name]]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise InputError(f"{name}: must be a finite number, got {json.dumps(doc[name])}.")
    return {k: (float(v) if hints[k] is float else v) for k, v in doc.items()}


def resolve_device(device: str) -> str:
    """ "auto" → "cuda" when a GPU is visible, else "cpu"; a CUDA device that is not there is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(f'device: {device!r} was asked for but no CUDA GPU is visible; use "cpu" or "auto".')
        if device.startswith("cuda:"):
            n = device.split(":", 1)[1]
            if not n.isdigit() or int(n) >= torch.cuda.device_count():
                raise InputError(f"device: {device!r} does not exist; {torch.cuda.device_count()} GPU(s) are visible.")
        return device
    raise InputError(f"device: unknown device {device!r}; use one of auto, cpu, cuda, cuda:N.")


def validate_common(spec: JobSpec, *, resume: bool = False) -> tuple[Any, dict[str, list[str]]]:
    """The checks every method shares, before training starts: (the dataset, the split {"train", "validation"}).

    The method's own requirements (its section's values, what each training case must hold) are its
    descriptor's; :func:`WeakAnnotateLib.jobs.spec.validate` runs both.
    """
    resolve_device(spec.device)
    if spec.optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer: unknown optimizer {spec.optimizer!r}; use one of {', '.join(OPTIMIZERS)}.")
    if spec.schedule not in SCHEDULES:
        raise InputError(f"schedule: use one of {', '.join(SCHEDULES)}, got {spec.schedule!r}.")
    if spec.augmentation not in AUGMENTATIONS:
        raise InputError(f"augmentation: use one of {', '.join(AUGMENTATIONS)}, got {spec.augmentation!r}.")
    if not 0.0 <= spec.foreground_fraction <= 1.0:
        raise InputError(f"foreground_fraction: must be in [0, 1], got {spec.foreground_fraction}.")
    if spec.network not in NETWORKS:
        raise InputError(f"network: use one of {', '.join(repr(n) for n in NETWORKS)}, got {spec.network!r}.")
    positive = {"epochs": spec.epochs, "learning_rate": spec.learning_rate, "batch_size": spec.batch_size}
    for name, value in positive.items():
        if value <= 0:
            raise InputError(f"{name}: must be > 0, got {value}.")
    for name, value in (
        ("padding_mm", spec.padding_mm),
        ("spacing_mm", spec.spacing_mm),
        ("steps_per_epoch", spec.steps_per_epoch),
        ("max_minutes", spec.max_minutes),
    ):
        if value < 0:
            raise InputError(f"{name}: must be ≥ 0, got {value}.")
    if len(spec.patch_size) != 3 or min(spec.patch_size) < 16 or any(p % 8 for p in spec.patch_size):
        raise InputError(f"patch_size: three sizes, each a multiple of 8 and ≥ 16, are needed; got {spec.patch_size}.")
    if spec.channels and (len(spec.channels) > 6 or min(spec.channels) < 1):
        raise InputError(f"channels: 1 to 6 positive feature counts (or [] to size the U-Net for the patch) are "
                         f"needed; got {spec.channels}.")  # fmt: skip
    if 2 ** (len(spec.channels) - 1) > min(spec.patch_size):
        raise InputError(
            f"channels: {len(spec.channels)} levels need a patch_size of at least {2 ** (len(spec.channels) - 1)}."
        )
    if not 0.0 <= spec.validation_fraction < 1.0:
        raise InputError(f"validation_fraction: must be in [0, 1), got {spec.validation_fraction}.")

    ds_path = spec.dataset_path
    if not ds_path.exists():
        raise InputError(f"dataset: {ds_path} does not exist.")
    dataset = DatasetFolder.load(ds_path, field_name="dataset")
    if not dataset.cases:
        raise InputError(f"dataset: {ds_path} has no cases; add cases before training.")
    ids = [c.id for c in dataset.cases]
    for name, chosen in (("validation_cases", spec.validation_cases), ("train_cases", spec.train_cases)):
        missing = [c for c in chosen if c not in ids]
        if missing:
            raise InputError(f"{name}: no case {missing[0]!r} in the dataset.")
    if spec.validation_cases:
        val = list(spec.validation_cases)
    else:
        n_val = int(round(len(ids) * spec.validation_fraction))
        n_val = min(n_val, len(ids) - 1)
        val = ids[len(ids) - n_val :] if n_val > 0 else []
    train = list(spec.train_cases) if spec.train_cases else [c for c in ids if c not in val]
    if not train:
        raise InputError("dataset: no case is left for training after the validation split.")

    for entry in dataset.cases:
        if entry.id not in train and entry.id not in val:
            continue
        image = dataset.path(entry.image)
        if not image.exists():
            raise InputError(f"dataset: case {entry.id!r}: image {image} does not exist.")
        for kind, p in entry.annotations.items():
            if not dataset.path(p).is_file():
                raise InputError(f"dataset: case {entry.id!r}: {kind} annotation {dataset.path(p)} does not exist.")
        if entry.reference and not dataset.path(entry.reference).is_file():
            raise InputError(f"dataset: case {entry.id!r}: reference {dataset.path(entry.reference)} does not exist.")

    if spec.init_weights:
        check_init_weights(spec)
    out = spec.output_path
    if out.exists() and not out.is_dir():
        raise InputError(f"output: {out} is a file; give a folder for the job.")
    checkpoint = out / "checkpoints" / "last.pt"
    if resume and not checkpoint.is_file():
        raise InputError(f"output: {out} holds no checkpoint to resume from; start the job instead.")
    if not resume and (checkpoint.is_file() or (out / "model.json").is_file()):
        raise InputError(f"output: {out} already holds a job; resume it or choose a new output folder.")
    return dataset, {"train": train, "validation": val}


def check_init_weights(spec: JobSpec) -> Path:
    """``init_weights`` names a finished job (model.pt with its model.json); returns its model.pt."""
    folder = spec.resolve(spec.init_weights)
    folder = folder if folder.is_dir() else folder.parent
    weights, info = folder / "model.pt", folder / "model.json"
    if not weights.is_file() or not info.is_file():
        raise InputError(f"init_weights: {folder} is not a finished job (needs model.pt and model.json).")
    return weights
