"""Standard terms on segments: the category, type and modifier of Slicer's terminologies, on every segment.

How Slicer keeps it: a segment's tag ``TerminologyEntry`` (``vtkSegment.SetTerminology``) holds one string,
``context~category~type~modifier~anatomicContext~region~regionModifier``, each coded part
``scheme^value^meaning``; ``.seg.nrrd`` stores the tag (``SegmentN_Tags``), and a DICOM SEG carries the same
triples as its segments' property codes.

Which list: "Segmentation category and type - DICOM master list", loaded by Slicer's terminologies logic (the
desktop application's, or the headless one's from trame-slicer's resources); it holds the organs of the
data and the morphologic terms a weak annotation is mostly about ("Neoplasm", "Mass", "Edema", "Necrosis"),
which Slicer's General Anatomy list lacks. The General Anatomy list is searched next.

How a term is chosen (:func:`codes_for_name`), from a structure name such as ``kidney_left``,
``GTV_Mass (soft-tissue sarcoma)`` or ``tumour box corrected``:

1. the whole name, without "left"/"right", equal to a type's meaning or Slicer label ("liver", "small bowel");
2. a keyword of the morphologic terms: tumour/tumor/GTV/neoplasm/sarcoma/carcinoma/cancer/metastasis →
   Neoplasm, lesion/mass → Mass, necrosis/necrotic → Necrosis, edema/oedema → Edema;
3. the first (then longest) type meaning that occurs in the name as whole words ("liver prediction" → Liver,
   "portal vein and splenic vein" → Portal vein);
4. otherwise the segmentation node's default terminology if one was set (Slicer's
   ``Terminologies.DefaultTerminologyEntry`` attribute), else Tissue / Tissue, Slicer's own default.

"left"/"right" in the name become the type's Left/Right modifier when the type has one. A user's choice
(:func:`resolve_terminology`) is a type's meaning ("Neoplasm", "Kidney/Left", "Anatomical Structure/Liver"),
or a whole serialized entry.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import vtk

from ..core.errors import InputError
from ..files.dicom_seg import Code, SegmentCodes
from .slicer_runtime import SlicerRuntime

DICOM_MASTER = "Segmentation category and type - DICOM master list"
GENERAL_ANATOMY = "Segmentation category and type - 3D Slicer General Anatomy list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
CONTEXTS = (DICOM_MASTER, GENERAL_ANATOMY)
TAG = "TerminologyEntry"  # vtkSegment.GetTerminologyEntryTagName()
DEFAULT_ATTRIBUTE = "Terminologies.DefaultTerminologyEntry"

TISSUE = SegmentCodes(Code("85756007", "SCT", "Tissue"), Code("85756007", "SCT", "Tissue"))

# Keyword → type meaning, in the order they are tried (rule 2 of the module docstring).
KEYWORDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("necrosis", "necrotic"), "Necrosis"),
    (("edema", "oedema"), "Edema"),
    (("tumour", "tumor", "gtv", "neoplasm", "sarcoma", "carcinoma", "cancer", "metastasis", "metastases"), "Neoplasm"),
    (("lesion", "lesions", "mass"), "Mass"),
)
SIDES = {"left": "Left", "right": "Right"}


@dataclass(frozen=True)
class Term:
    """A type found in a loaded terminology: its context, category, type and (optional) modifier."""

    context: str
    codes: SegmentCodes
    color: tuple[float, float, float] | None = None

    def serialize(self) -> str:
        return serialize(self.context, self.codes)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower().replace("_", " "))


def _code(obj: Any) -> Code:
    return Code(obj.GetCodeValue(), obj.GetCodingSchemeDesignator(), obj.GetCodeMeaning())


def serialize(context: str, codes: SegmentCodes) -> str:
    """Slicer's terminology entry string for ``codes`` in ``context`` (what the TerminologyEntry tag holds)."""
    import slicer

    m = codes.modifier or Code("", "", "")
    c, t = codes.category, codes.type
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        context, c.value, c.scheme, c.meaning, t.value, t.scheme, t.meaning, m.value, m.scheme, m.meaning,
        ANATOMIC_CONTEXT, "", "", "", "", "", "",
    )  # fmt: skip


def parse(entry: str) -> tuple[str, SegmentCodes]:
    """(context, codes) of a serialized terminology entry; an InputError if it is not one."""
    parts = entry.split("~")
    if len(parts) < 4:
        raise InputError(f"{entry!r} is not a Slicer terminology entry (context~category~type~modifier~...).")

    def triple(text: str) -> Code | None:
        fields = text.split("^")
        if len(fields) != 3 or not fields[0] or not fields[1]:
            return None
        scheme, value, meaning = fields
        return Code(value, scheme, meaning)

    category, kind = triple(parts[1]), triple(parts[2])
    if category is None or kind is None:
        raise InputError(f"Terminology entry {entry!r} lacks a category or a type code.")
    return parts[0], SegmentCodes(category, kind, triple(parts[3]))


def _loaded_contexts(logic: Any) -> tuple[str, ...]:
    names = vtk.vtkStringArray()
    logic.GetLoadedTerminologyNames(names)
    loaded = {names.GetValue(n) for n in range(names.GetNumberOfValues())}
    return tuple(c for c in CONTEXTS if c in loaded)


class _Index:
    """The types of the loaded contexts by lower-case meaning and Slicer label.

    Built once per set of loaded contexts and shared by every runtime of the process; it holds copies of the
    category and type objects, never a logic (a runtime's logic is passed in when modifiers are looked up).
    """

    def __init__(self, logic: Any, contexts: tuple[str, ...]) -> None:
        import slicer

        self.contexts = contexts
        self.by_name: dict[str, list[tuple[str, Any, Any]]] = {}
        for context in contexts:
            for n in range(logic.GetNumberOfCategoriesInTerminology(context)):
                category = slicer.vtkSlicerTerminologyCategory()
                logic.GetNthCategoryInTerminology(context, n, category)
                for k in range(logic.GetNumberOfTypesInTerminologyCategory(context, category)):
                    kind = slicer.vtkSlicerTerminologyType()
                    logic.GetNthTypeInTerminologyCategory(context, category, k, kind)
                    for key in {kind.GetCodeMeaning().lower(), (kind.GetSlicerLabel() or "").lower()} - {""}:
                        self.by_name.setdefault(key, []).append((context, category, kind))

    @staticmethod
    def modifier(logic: Any, context: str, category: Any, kind: Any, meaning: str) -> Code | None:
        import slicer

        for n in range(logic.GetNumberOfTypeModifiersInTerminologyType(context, category, kind)):
            modifier = slicer.vtkSlicerTerminologyType()
            logic.GetNthTypeModifierInTerminologyType(context, category, kind, n, modifier)
            if modifier.GetCodeMeaning().lower() == meaning.lower():
                return _code(modifier)
        return None

    def term(self, logic: Any, key: str, *, category: str | None = None, side: str | None = None) -> Term | None:
        for context, cat, kind in self.by_name.get(key.lower(), []):
            if category is not None and cat.GetCodeMeaning().lower() != category.lower():
                continue
            modifier = self.modifier(logic, context, cat, kind, side) if side else None
            rgb = kind.GetRecommendedDisplayRGBValue()
            color = tuple(v / 255.0 for v in rgb) if rgb and rgb != (127, 127, 127) else None
            return Term(context, SegmentCodes(_code(cat), _code(kind), modifier), color)
        return None

    def meanings(self) -> list[str]:
        return sorted(self.by_name)


_indexes: dict[tuple[str, ...], _Index] = {}


def _index(rt: SlicerRuntime) -> _Index:
    contexts = _loaded_contexts(rt.terminologies_logic)
    if contexts not in _indexes:
        _indexes[contexts] = _Index(rt.terminologies_logic, contexts)
    return _indexes[contexts]


def codes_for_name(rt: SlicerRuntime, name: str, default: Term | None = None) -> Term:
    """The term a structure's name stands for (see the module docstring for the rules)."""
    index, logic = _index(rt), rt.terminologies_logic
    words = _words(re.sub(r"\(.*?\)", " ", name)) or _words(name)
    side = next((SIDES[w] for w in words if w in SIDES), None)
    core = [w for w in words if w not in SIDES]
    found = index.term(logic, " ".join(core), side=side) if core else None
    if found is None:
        for keywords, meaning in KEYWORDS:
            if any(w in keywords for w in _words(name)):
                found = index.term(logic, meaning, category="Morphologically Altered Structure")
                break
    if found is None and core:
        text = f" {' '.join(core)} "
        hits = []
        for key in index.by_name:
            at = text.find(f" {key} ")
            if at >= 0:
                hits.append((at, -len(key), key))
        if hits:
            found = index.term(logic, min(hits)[2], side=side)
    if found is not None:
        return found
    return default if default is not None else Term(DICOM_MASTER, TISSUE, None)


def resolve_terminology(rt: SlicerRuntime, choice: str | SegmentCodes | Term) -> Term:
    """A user's choice: a Term, codes, a serialized entry, or "Type", "Type/Modifier", "Category/Type[/Modifier]"."""
    if isinstance(choice, Term):
        return choice
    if isinstance(choice, SegmentCodes):
        return Term(DICOM_MASTER, choice)
    text = str(choice).strip()
    if "~" in text:
        context, codes = parse(text)
        return Term(context or DICOM_MASTER, codes)
    index = _index(rt)
    parts = [p.strip() for p in re.split(r"[/,]", text) if p.strip()]
    attempts: list[tuple[str | None, str, str | None]] = []
    if len(parts) == 1:
        attempts = [(None, parts[0], None)]
    elif len(parts) == 2:
        attempts = [(None, parts[0], parts[1]), (parts[0], parts[1], None)]
    elif len(parts) == 3:
        attempts = [(parts[0], parts[1], parts[2])]
    for category, kind, modifier in attempts:
        term = index.term(rt.terminologies_logic, kind, category=category, side=modifier)
        if term is not None and (modifier is None or term.codes.modifier is not None):
            return term
    close = difflib.get_close_matches(parts[-1].lower() if parts else text.lower(), index.meanings(), n=4)
    hint = f" Close: {', '.join(close)}." if close else ""
    raise InputError(
        f"No terminology type {text!r} in {' or '.join(index.contexts) or 'the loaded terminologies'}; give a type "
        f"(e.g. 'Neoplasm', 'Liver', 'Kidney/Left', 'Anatomical Structure/Spinal cord').{hint}"
    )


def node_default(segmentation_node: Any) -> Term | None:
    """The default terminology a user set on a segmentation node (Slicer's attribute), if any."""
    if segmentation_node is None:
        return None
    value = segmentation_node.GetAttribute(DEFAULT_ATTRIBUTE)
    if not value:
        return None
    try:
        context, codes = parse(value)
    except InputError:
        return None
    return Term(context or DICOM_MASTER, codes)


def set_node_default(rt: SlicerRuntime, segmentation_node: Any, choice: str | SegmentCodes | Term) -> Term:
    """Set the default terminology of a segmentation node: the term of segments whose name says nothing."""
    term = resolve_terminology(rt, choice)
    segmentation_node.SetAttribute(DEFAULT_ATTRIBUTE, term.serialize())
    return term


def set_segment_terminology(
    rt: SlicerRuntime,
    segmentation_node: Any,
    segment_id: str,
    choice: str | SegmentCodes | Term | None = None,
) -> Term:
    """Write the segment's TerminologyEntry: the user's ``choice``, else the term its name stands for."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        raise InputError(f"Segment {segment_id!r} is not in {segmentation_node.GetName()}.")
    if choice is None:
        term = codes_for_name(rt, segment.GetName(), node_default(segmentation_node))
    else:
        term = resolve_terminology(rt, choice)
    segment.SetTag(TAG, term.serialize())
    return term


def segment_terminology(rt: SlicerRuntime, segmentation_node: Any, segment_id: str) -> Term:
    """The segment's TerminologyEntry; a segment without one (made elsewhere) gets the term of its name."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        raise InputError(f"Segment {segment_id!r} is not in {segmentation_node.GetName()}.")
    value = vtk.reference("")
    if segment.GetTag(TAG, value) and str(value):
        try:
            context, codes = parse(str(value))
            if codes != TISSUE or not segment.GetName():
                return Term(context, codes)
        except InputError:
            pass
    return codes_for_name(rt, segment.GetName(), node_default(segmentation_node))
