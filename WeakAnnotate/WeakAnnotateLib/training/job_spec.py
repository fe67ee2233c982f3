"""The training job spec: one JSON file that says everything a run depends on.

Why every hyper-parameter lives here (and is copied into ``model.json``): opaque training — settings hidden in
a GUI and not persisted — is the complaint users have about today's tools. A spec is validated completely
before anything starts, and each problem is reported with the name of the field (``epochs: expected an
integer, got "two"``), so a panel can point at the widget and the CLI at the line.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InputError

METHODS = (
    "full_supervision",
    "extreme_point_network",
    "pet_box_dice",
    "pet_box_mdice_ms",
    "pet_box_full_supervision",
    "weak_net",
    "box_prior",
)
REFERENCE_METHODS = ("full_supervision", "pet_box_full_supervision")  # trained on the reference masks
DEVICES = ("auto", "cpu", "cuda")
NETWORKS = ("", "unet_3d", "unet_2.5d")
OPTIMIZERS = ("adam", "sgd")
SGD_MOMENTUM = 0.9  # optimizer "sgd": the pet_box paper's momentum (Afshari et al.: SGD, lr 1e-5, momentum 0.9)


@dataclass
class JobSpec:
    """A training job. Paths may be relative to the spec file's folder."""

    dataset: str  # dataset folder (with dataset.json)
    output: str  # job folder: progress.jsonl, checkpoints/, model.pt + model.json
    method: str = "full_supervision"  # "full_supervision" (reference masks) or "extreme_point_network"
    epochs: int = 10  # epochs (per round for the extreme-point network)
    learning_rate: float = 1e-3
    batch_size: int = 2
    patch_size: list[int] = field(default_factory=lambda: [48, 48, 48])  # training window, voxels (k, j, i)
    spacing_mm: float = 2.0  # crops are resampled to this isotropic spacing (0 = keep the image's)
    padding_mm: float = 20.0  # paper: the points' box + 20 mm
    channels: list[int] = field(default_factory=lambda: [8, 16, 32])  # U-Net features per level
    # "unet_3d", or "unet_2.5d" (residual 2D U-Net on 3 neighbouring slices, the tightness-prior paper's);
    # "" = the method's own (box_prior: unet_2.5d, every other method: unet_3d)
    network: str = ""
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda" or "cuda:N"
    seed: int = 0
    validation_cases: list[str] = field(default_factory=list)  # ids; empty: the last validation_fraction
    validation_fraction: float = 0.25
    train_cases: list[str] = field(default_factory=list)  # ids; empty: every case not in validation
    steps_per_epoch: int = 0  # 0: one pass over the training cases
    # extreme-point network (paper steps 3–4)
    points_channel: bool = True  # second input channel: Gaussians at the six points
    sigma_mm: float = 3.0  # the Gaussians' sigma
    rounds: int = 3  # at most this many train → predict → random-walker rounds
    random_walker: bool = True  # refine predictions with the random walker between rounds (False: w/o RW)
    erosion_mm: float = 4.0  # paper: r = 4 (voxels of 1 mm) for both foreground and background
    beta: float = 130.0  # paper
    convergence: float = 0.01  # stop when 1 − Dice(consecutive round predictions) < this
    # PET lesions from boxes (Afshari et al.; training/pet_box.py): pet_box_dice, pet_box_mdice_ms and the
    # upper bound pet_box_full_supervision (the same network and augmentation, Dice against the reference)
    init_model: str = ""  # a finished job (pet_box_dice) whose weights start this one; "" = random init
    box_margin_mm: float = 13.75  # boxes simulated from the reference: tight box + this (box Dice ≈ 0.28)
    mdice_alpha: float = 0.1  # α of the modified Dice's Heaviside switch
    mdice_weight: float = 10.0  # β
    ms_weight: float = 1.0  # λ
    ms_epsilon: float = 0.03  # ε of the regularised Heaviside
    ms_omega: list[float] = field(default_factory=lambda: [1.0, 3.0])  # ω1, ω2
    suv_zscore: bool = False  # pet_box: input = raw SUV z-scored over the crop (paper); False = percentile + window
    # optimiser of every method: "adam" (default: converges in the few hundred steps a CPU run affords) or "sgd"
    # (momentum SGD_MOMENTUM; the pet_box paper's choice, with learning_rate 1e-5 and ~100 epochs)
    optimizer: str = "adam"
    # boxes with the tightness prior and log-barriers (issue 5; training/box_prior.py): box_prior
    box_source: str = "auto"  # "tight_slices", "box_3d" (of the reference), "annotation", "auto"
    box_margin_vox: int = 0  # grow every box by this many crop voxels per side (paper's sensitivity: 10)
    tightness: str = "2d"  # "2d": bands per slice (paper); "3d": slabs of planes along 3 axes; "2d+3d"
    background: str = "emptiness"  # L_O: "emptiness" (paper's choice) or "masked_ce"
    tightness_lambda: float = 1e-4  # λ of Eq. 6 (paper: 1e-4)
    size_epsilon: float = 0.5  # lower size bound ε·|box|: the paper does not give ε; 0.1 collapses (docs)
    entropy_weight: float = 0.0  # our addition: binary entropy inside the boxes (0 = the paper's Eq. 6)
    emptiness_tolerance: float = 1.0  # foreground pixels per slice allowed outside the box (paper: 0; docs)
    barrier_growth: float = 1.1  # t = 5·barrier_growth^epoch (paper: 1.1 per epoch of its ~1750 steps)
    # Weak-Net from surface points (issue 6; training/weak_net.py)
    weak_net_lambda: float = 1e-4  # λ of L = CE + λ·MSE (paper: 1e-4); 0 = the template-alone ablation
    weak_net_distance_mm: float = 4.0  # d: the MSE weight is high within d of the template's boundary
    weak_net_threshold: float = 0.5  # γ: U-Net 1's output thresholded at this at inference
    # test hooks (documented; never needed in real use)
    fail_at_step: int = 0  # > 0: raise an error at this global step (a crashing worker)
    step_delay_s: float = 0.0  # sleep per step (so that a test can cancel mid-epoch)
    spec_path: str = ""  # where the spec was read from (set by load_spec)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("spec_path", None)
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
    known = {f.name: f for f in fields(spec_class) if f.name != "spec_path"}
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
    return {k: (float(v) if hints[k] is float else v) for k, v in doc.items()}


def spec_from_dict(doc: Any, spec_path: str | Path = "") -> JobSpec:
    """Check types and required fields, naming the field; no file is looked at yet."""
    return JobSpec(**checked_fields(doc, JobSpec), spec_path=str(spec_path))


def load_spec(path: str | Path) -> JobSpec:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Job spec {path} does not exist.")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"Job spec {path} is not valid JSON ({e}).") from None
    return spec_from_dict(doc, path.resolve())


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


def validate(spec: JobSpec, *, resume: bool = False) -> dict[str, Any]:
    """Everything checkable before training starts; returns the split {"train": [...], "validation": [...]}."""
    from ..dataset import DatasetFolder

    if spec.method not in METHODS:
        raise InputError(f"method: unknown method {spec.method!r}; use one of {', '.join(METHODS)}.")
    resolve_device(spec.device)
    if spec.optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer: unknown optimizer {spec.optimizer!r}; use one of {', '.join(OPTIMIZERS)}.")
    if spec.network not in NETWORKS:
        raise InputError(f"network: use one of {', '.join(repr(n) for n in NETWORKS)}, got {spec.network!r}.")
    if spec.suv_zscore and not spec.method.startswith("pet_box"):
        raise InputError(f"suv_zscore: only the pet_box methods use it, not {spec.method!r}.")
    positive = {
        "epochs": spec.epochs,
        "learning_rate": spec.learning_rate,
        "batch_size": spec.batch_size,
        "rounds": spec.rounds,
    }
    for name, value in positive.items():
        if value <= 0:
            raise InputError(f"{name}: must be > 0, got {value}.")
    for name, value in (
        ("padding_mm", spec.padding_mm),
        ("spacing_mm", spec.spacing_mm),
        ("erosion_mm", spec.erosion_mm),
        ("convergence", spec.convergence),
        ("steps_per_epoch", spec.steps_per_epoch),
        ("sigma_mm", spec.sigma_mm),
    ):
        if value < 0:
            raise InputError(f"{name}: must be ≥ 0, got {value}.")
    if len(spec.patch_size) != 3 or min(spec.patch_size) < 16 or any(p % 8 for p in spec.patch_size):
        raise InputError(f"patch_size: three sizes, each a multiple of 8 and ≥ 16, are needed; got {spec.patch_size}.")
    if not 1 <= len(spec.channels) <= 6 or min(spec.channels) < 1:
        raise InputError(f"channels: 1 to 6 positive feature counts are needed; got {spec.channels}.")
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
        if entry.id not in train:
            continue
        if spec.method in REFERENCE_METHODS and not entry.reference:
            raise InputError(
                f"dataset: case {entry.id!r} has no reference mask; full supervision needs one per training case."
            )
        if spec.method == "extreme_point_network" and not entry.annotations.get("extreme_points"):
            raise InputError(
                f"dataset: case {entry.id!r} has no extreme-point annotation; the extreme-point "
                "network needs six clicks per training case."
            )
        if spec.method == "weak_net" and not entry.annotations.get("surface_points"):
            raise InputError(
                f"dataset: case {entry.id!r} has no surface_points annotation; Weak-Net needs at least 5 "
                "points on the object's surface per training case."
            )
        if (
            spec.method in ("pet_box_dice", "pet_box_mdice_ms")
            and not entry.reference
            and not any(k.startswith("box") for k in entry.annotations)
        ):
            raise InputError(
                f"dataset: case {entry.id!r} has no box annotation and no reference to simulate boxes from."
            )
    if spec.method == "box_prior":
        from .box_prior import validate_box_prior

        validate_box_prior(spec)
        for case_id in train:
            entry = dataset.case(case_id)
            boxed = "slice_boxes" in entry.annotations or any(k.startswith("box") for k in entry.annotations)
            if spec.box_source == "annotation" and not boxed:
                raise InputError(
                    f"dataset: case {case_id!r} has no slice_boxes or box annotation (box_source: annotation)."
                )
            if spec.box_source in ("tight_slices", "box_3d") and not entry.reference:
                raise InputError(
                    f"dataset: case {case_id!r} has no reference mask to take {spec.box_source} boxes from."
                )
            if spec.box_source == "auto" and not boxed and not entry.reference:
                raise InputError(
                    f"dataset: case {case_id!r} has no box annotation and no reference to take boxes from."
                )
    if spec.method.startswith("pet_box"):
        from .pet_box import validate_pet_box

        validate_pet_box(spec)
    if spec.method == "weak_net":
        from .weak_net import validate_weak_net

        validate_weak_net(spec)

    out = spec.output_path
    if out.exists() and not out.is_dir():
        raise InputError(f"output: {out} is a file; give a folder for the job.")
    checkpoint = out / "checkpoints" / "last.pt"
    if resume and not checkpoint.is_file():
        raise InputError(f"output: {out} holds no checkpoint to resume from; start the job instead.")
    if not resume and (checkpoint.is_file() or (out / "model.json").is_file()):
        raise InputError(f"output: {out} already holds a job; resume it or choose a new output folder.")
    return {"train": train, "validation": val}
