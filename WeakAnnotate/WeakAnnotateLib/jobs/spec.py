"""Job specs as files: read one (this layout, or the previous flat one), and check it completely before a run.

A spec holds the fields every method shares and one section named after its method::

    {"dataset": "ds", "output": "ds/jobs/w", "method": "weak_net", "epochs": 20,
     "weak_net": {"weak_net_lambda": 0.0001}}

Why this module and not :mod:`..training.job_spec`: the sections are the methods' (their descriptors), so
reading and checking a spec needs the registry, which sits above the generic training code.

The previous layout had all 48 fields in one flat object, the fields of every method written into every
``job.json`` and ``model.json``. Such a file still loads: the fields of the job's own method move into its
section and those of the other methods (which never affected the job) are dropped.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..methods import registry
from ..methods.base import TrainingMethodInfo, check_option_values
from ..training.job_spec import JobSpec, checked_fields, validate_common
from .pseudo_labels import PseudoLabelSpec, is_pseudo_label_spec

COMMON_FIELDS = tuple(f.name for f in fields(JobSpec) if f.name not in ("options", "spec_path"))


def _section_fields(info: TrainingMethodInfo) -> set[str]:
    return {f.name for f in fields(info.options)} if info.options is not None else set()


def _legacy_fields() -> set[str]:
    """Every field that some method's section holds: the previous flat layout's method fields."""
    return {name for t in registry.training_methods() for name in _section_fields(t)}


def normalise(doc: Any) -> tuple[TrainingMethodInfo, dict[str, Any], dict[str, Any]]:
    """(method, common fields, section) of a spec in either layout; unknown fields are named."""
    if not isinstance(doc, dict):
        raise InputError("The job spec must be a JSON object of fields.")
    info = registry.training_method(doc.get("method", "full_supervision"))
    if info.standalone:
        raise InputError(f"method: {info.name} runs its own job; load it with its own spec.")
    own = _section_fields(info)
    sections = {t.section for t in registry.training_methods()}
    common: dict[str, Any] = {}
    section: dict[str, Any] = {}
    given = doc.get(info.section)
    if given is not None:
        if not isinstance(given, dict):
            raise InputError(f"{info.section}: expected an object of the method's fields, got {json.dumps(given)}.")
        section.update(given)
    legacy = _legacy_fields()
    for key, value in doc.items():
        if key in COMMON_FIELDS:
            common[key] = value
        elif key == info.section:
            continue
        elif key in sections:
            raise InputError(f"{key}: a section for method {key!r}, but this job's method is {info.name!r}.")
        elif key in own:  # previous layout: the method's own field at the top level
            if given is not None:
                raise InputError(f"{key}: belongs in the {info.section!r} section, not at the top level.")
            section[key] = value
        elif key in legacy and given is None:
            continue  # previous layout: another method's field, written into every spec, never used by this one
        else:
            known = ", ".join(COMMON_FIELDS)
            raise InputError(f"{key}: unknown job spec field; known fields are {known}, and the {info.section!r} "
                             f"section ({', '.join(sorted(own)) or 'no fields'}).")  # fmt: skip
    return info, common, section


def spec_from_dict(doc: Any, spec_path: str | Path = "") -> JobSpec:
    """Check types and required fields, naming the field; no file is looked at yet."""
    info, common, section = normalise(doc)
    values = checked_fields(common, JobSpec)
    options = None
    if info.options is not None:
        options = info.options(**checked_fields(section, info.options, f"{info.section} section"))
    elif section:
        raise InputError(f"{next(iter(section))}: {info.name} has no fields of its own.")
    return JobSpec(**values, options=options, spec_path=str(spec_path))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Job spec {path} does not exist.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"Job spec {path} is not valid JSON ({e}).") from None


def load_spec(path: str | Path) -> JobSpec:
    return spec_from_dict(read_json(path), Path(path).resolve())


def standalone_method(path: str | Path) -> TrainingMethodInfo | None:
    """The method of a spec file when it runs its own job (box_patch_classifier); None otherwise (any read
    problem too: the generic loader reports it)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    for t in registry.training_methods():
        if t.standalone and doc.get("method") == t.name:
            return t
    return None


def validate(spec: JobSpec, *, resume: bool = False) -> dict[str, Any]:
    """Everything checkable before training starts: the common fields, the method's section, and what each
    training case must hold for this method. Returns the split {"train": [...], "validation": [...]}."""
    info = registry.training_method(spec.method)
    if spec.options is not None:
        check_option_values(spec.options)
    if info.spec_check is not None:
        info.spec_check(spec)
    dataset, split = validate_common(spec, resume=resume)
    if info.case_check is not None:
        for case_id in split["train"]:
            problem = info.case_check(dataset.case(case_id), spec)
            if problem:
                raise InputError(problem)
    return split


def network_of(spec: JobSpec) -> str:
    """The network a job trains: the spec's ``network`` when set, else its method's (the descriptor's)."""
    return spec.network or registry.training_method(spec.method).network


def load_any(path: str | Path) -> Any:
    """A job spec of any kind: a :class:`JobSpec`, a standalone method's own spec (box_patch_classifier), or a
    pseudo-labelling job's."""
    if is_pseudo_label_spec(read_json(path)):
        return PseudoLabelSpec.load(path)
    info = standalone_method(path)
    return info.standalone_spec.load(path) if info is not None else load_spec(path)


def validate_any(spec: Any, *, resume: bool = False) -> None:
    """:func:`validate` for a :class:`JobSpec`; a standalone method's spec checks itself."""
    if isinstance(spec, JobSpec):
        validate(spec, resume=resume)
    else:
        spec.check(resume=resume)


def job_document(method: str, common: dict[str, Any], section: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON of a job spec as a face gathers it: the common fields (``dataset``, ``output``, ``epochs`` …)
    and the method's own fields. A standalone method's spec is flat (its own fields only)."""
    info = registry.training_method(method)
    doc = {**info.defaults, **common, "method": method}
    if info.standalone:
        return {**doc, **(section or {})}
    if section:
        doc[info.section] = dict(section)
    return doc
