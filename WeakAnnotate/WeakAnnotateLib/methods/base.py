"""What a method package declares about itself: one :class:`AnnotationMethod` with its :class:`TrainingMethodInfo`.

Why descriptors and not code that asks "which method is this?": the CLI, the job spec's check, the worker's
dispatch, prediction's network, the hub panel, the web page and the self-tests all need the same facts about a
method (its annotation, its training methods and their fields, its network). Each method package states them
once, in its ``descriptor.py``; :mod:`.registry` collects the packages, and every face reads the registry.
The descriptors are plain data and name their heavy parts (torch training code, commands) by import path, so
that listing the methods never loads torch or the Slicer core.
"""

from __future__ import annotations

import importlib
import typing
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from ..core.errors import InputError


def option(default: Any, help: str, *, choices: tuple[Any, ...] = (), minimum: float | None = None) -> Any:
    """A job-spec field of a method's section: its default, the help a panel shows as tooltip, and (when set)
    the allowed values or lower bound that the spec check enforces."""
    meta = {"help": help, "choices": choices, "minimum": minimum}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class FieldInfo:
    """One field of a job spec as a face shows it: a widget per field, the help as its tooltip."""

    name: str
    type: str  # "int", "float", "bool", "str", "list[int]", "list[float]", "list[str]"
    default: Any
    help: str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "choices": list(self.choices)}


def _type_text(annotation: Any) -> str:
    if typing.get_origin(annotation) is list:
        return f"list[{typing.get_args(annotation)[0].__name__}]"
    return getattr(annotation, "__name__", str(annotation))


def field_infos(spec_class: type | None, skip: tuple[str, ...] = ()) -> list[FieldInfo]:
    """The fields of a dataclass declared with :func:`option` (or plain fields with a comment-free default)."""
    if spec_class is None:
        return []
    hints = typing.get_type_hints(spec_class)
    out = []
    for f in fields(spec_class):
        if f.name in skip or f.name == "spec_path":
            continue
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = None
        meta = f.metadata or {}
        out.append(
            FieldInfo(
                f.name,
                _type_text(hints[f.name]),
                default,
                str(meta.get("help", "")),
                tuple(meta.get("choices", ())),
                meta.get("minimum"),
            )
        )
    return out


def check_option_values(options: Any) -> None:
    """Choices and lower bounds declared with :func:`option`, each problem naming its field."""
    for f in fields(options):
        meta = f.metadata or {}
        value = getattr(options, f.name)
        if meta.get("choices") and value not in meta["choices"]:
            raise InputError(f"{f.name}: use one of {', '.join(map(str, meta['choices']))}, got {value!r}.")
        if meta.get("minimum") is not None and isinstance(value, (int, float)) and value < meta["minimum"]:
            raise InputError(f"{f.name}: must be ≥ {meta['minimum']:g}, got {value}.")


def load_object(path: str) -> Any:
    """``"package.module:name"`` → the object. Why by name: a descriptor must not load torch (or the Slicer
    core) just to be listed; the training code is imported when a job actually runs."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


# A data requirement of one training case: the dataset entry in, "" when it is met, else what is missing.
CaseCheck = Callable[[Any, Any], str]


@dataclass(frozen=True)
class TrainingMethodInfo:
    """A training method: what a job spec's ``method`` names."""

    name: str
    title: str
    help: str
    options: type | None = None  # the dataclass of the spec's per-method section (None: common fields only)
    trainer: str = ""  # "module:Class" of its TrainingMethod (run by the worker), or ""
    standalone: str = ""  # "module:function(path, resume) -> exit status" for a job with its own spec and loop
    standalone_spec: type | None = None  # that job's spec dataclass (its fields for the faces)
    network: str = "unet_3d"  # the network it trains and predicts with ("unet_3d" | "unet_2.5d" | "patch_cnn")
    reference: bool = False  # trains on reference masks (an upper bound), not on weak marks
    case_check: CaseCheck | None = None  # data requirement of every training case
    spec_check: Callable[[Any], None] | None = None  # checks of the section beyond types, choices and bounds
    defaults: dict[str, Any] = field(default_factory=dict)  # common fields this method starts from (faces)

    @property
    def section(self) -> str:
        """The key of the job spec's per-method section."""
        return self.name

    def fields(self) -> list[FieldInfo]:
        if self.standalone_spec is not None:
            return field_infos(self.standalone_spec, skip=("dataset", "output", "method"))
        return field_infos(self.options)

    def make_options(self, values: dict[str, Any] | None = None) -> Any:
        return None if self.options is None else self.options(**(values or {}))

    def trainer_class(self) -> type:
        return load_object(self.trainer)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "help": self.help,
            "network": self.network,
            "reference": self.reference,
            "job": "standalone" if self.standalone else "worker",
            "defaults": dict(self.defaults),
            "fields": [f.to_json() for f in self.fields()],
        }


@dataclass(frozen=True)
class AnnotationMethod:
    """An annotation method: the mark a user gives, what it becomes in process, and what trains from it."""

    name: str
    title: str
    annotation: str  # the dataset's annotation kind it reads ("extreme_points", "box", "surface_points", ...)
    help: str
    simulate: str = ""  # "module:function" that simulates the annotation from a reference mask
    pseudo_label: str = ""  # "module:function" that makes the in-process pseudo-label ("" = none)
    # "module:function(image, annotation_path) -> mask": the pseudo-label of a dataset case ("" = none)
    label_case: str = ""
    training_methods: tuple[TrainingMethodInfo, ...] = ()
    module: str = ""  # the Slicer module (desktop face) that holds its panel ("" = the hub's)
    command: str = ""  # "module" of its CLI sub-command ("" = none)
    web_mode: str = ""  # the web page's mode for this annotation ("" = none)
    selftests: str = ""  # "module:name" of the list of self-test bodies run by its Slicer module
    order: int = 50  # where the faces list it (lower first); the reference (full supervision) comes last

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "annotation": self.annotation,
            "help": self.help,
            "simulate": self.simulate,
            "pseudo_label": self.pseudo_label,
            "labels_datasets": bool(self.label_case),
            "module": self.module,
            "web_mode": self.web_mode,
            "training_methods": [t.name for t in self.training_methods],
            "training": [t.to_json() for t in self.training_methods],
        }
