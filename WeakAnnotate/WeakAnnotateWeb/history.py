"""Undo / redo for the page: each action stores what it changed, before and after, and nothing else.

An action's state is a dict ``{key: value}`` over the keys it touched (a mode's point list, the box, one
segment, the active segment; the app says what each key means and how to put it back). Only keys whose value
changed are kept. Masks are stored as :class:`PackedMask` (the mask's bounding box, one bit a voxel,
zlib-compressed: a few kB for a tumour, well under 1 MB for an organ), and the history is bounded both in steps
and in bytes, dropping the oldest actions first, so a long session does not grow without limit.

*Unsaved* is the history's position against the last save: an undo back to the saved state is clean again.
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_STEPS = 200
MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, eq=False)
class PackedMask:
    """A boolean mask, compressed: its bounding box's bits, zlib'd. ``unpack()`` gives the exact mask back."""

    shape: tuple[int, int, int]
    start: tuple[int, int, int]
    stop: tuple[int, int, int]
    data: bytes

    @staticmethod
    def pack(mask: np.ndarray) -> PackedMask:
        mask = np.asarray(mask, bool)
        shape = tuple(int(n) for n in mask.shape)
        if not mask.any():
            return PackedMask(shape, (0, 0, 0), (0, 0, 0), b"")
        axes = [np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax))) for ax in range(3)]
        start = tuple(int(v[0]) for v in axes)
        stop = tuple(int(v[-1]) + 1 for v in axes)
        crop = mask[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))]
        return PackedMask(shape, start, stop, zlib.compress(np.packbits(crop, axis=None).tobytes(), 6))

    def unpack(self) -> np.ndarray:
        mask = np.zeros(self.shape, bool)
        if not self.data:
            return mask
        crop_shape = tuple(b - a for a, b in zip(self.start, self.stop, strict=True))
        bits = np.unpackbits(np.frombuffer(zlib.decompress(self.data), np.uint8), count=int(np.prod(crop_shape)))
        mask[tuple(slice(a, b) for a, b in zip(self.start, self.stop, strict=True))] = bits.reshape(crop_shape)
        return mask

    @property
    def voxels(self) -> int:
        return int(self.unpack().sum()) if self.data else 0

    @property
    def nbytes(self) -> int:
        return len(self.data) + 64

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PackedMask) and (self.shape, self.start, self.stop, self.data) == (
            other.shape,
            other.start,
            other.stop,
            other.data,
        )

    def __hash__(self) -> int:
        return hash((self.shape, self.start, self.stop, self.data))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape and bool(np.all(a == b))
    try:
        return bool(a == b)
    except (ValueError, TypeError):  # objects holding arrays compare element-wise: treat as changed
        return False


def _size(value: Any) -> int:
    """Rough bytes held by a state value (for the memory bound)."""
    if value is None:
        return 8
    if isinstance(value, PackedMask):
        return value.nbytes
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    return 64


@dataclass
class Action:
    label: str
    before: dict[Hashable, Any]
    after: dict[Hashable, Any]
    serial: int
    nbytes: int = field(default=0)


class History:
    """Undo and redo stacks of :class:`Action`; bounded by ``max_steps`` and ``max_bytes``."""

    def __init__(self, max_steps: int = MAX_STEPS, max_bytes: int = MAX_BYTES) -> None:
        self.max_steps = max_steps
        self.max_bytes = max_bytes
        self.undo_stack: list[Action] = []
        self.redo_stack: list[Action] = []
        self._serial = 0
        self._saved_serial = 0  # the serial of the action on top of the undo stack at the last save (0: none)
        self._saved_lost = False  # the saved state fell off the bounded history or was replaced by a new branch

    # --- recording ------------------------------------------------------------------------------------

    def record(self, label: str, before: dict[Hashable, Any], after: dict[Hashable, Any]) -> Action | None:
        """Keep the keys that changed; nothing is recorded when nothing changed. A new action clears redo."""
        keys = [k for k in {**before, **after} if not _same(before.get(k), after.get(k))]
        if not keys:
            return None
        self._serial += 1
        action = Action(label, {k: before.get(k) for k in keys}, {k: after.get(k) for k in keys}, self._serial)
        action.nbytes = sum(_size(v) for v in (*action.before.values(), *action.after.values()))
        if any(a.serial == self._saved_serial for a in self.redo_stack):
            self._saved_lost = True  # the saved state was undone and is now replaced
        self.redo_stack.clear()
        self.undo_stack.append(action)
        self._trim()
        return action

    def _trim(self) -> None:
        while len(self.undo_stack) > self.max_steps or (
            len(self.undo_stack) > 1 and sum(a.nbytes for a in self.undo_stack) > self.max_bytes
        ):
            dropped = self.undo_stack.pop(0)
            if dropped.serial == self._saved_serial:
                self._saved_lost = True

    # --- moving -------------------------------------------------------------------------------------

    def undo(self) -> Action | None:
        """The action to take back (apply its ``before``), or None."""
        if not self.undo_stack:
            return None
        action = self.undo_stack.pop()
        self.redo_stack.append(action)
        return action

    def redo(self) -> Action | None:
        """The action to do again (apply its ``after``), or None."""
        if not self.redo_stack:
            return None
        action = self.redo_stack.pop()
        self.undo_stack.append(action)
        return action

    @property
    def can_undo(self) -> bool:
        return bool(self.undo_stack)

    @property
    def can_redo(self) -> bool:
        return bool(self.redo_stack)

    @property
    def undo_label(self) -> str:
        return self.undo_stack[-1].label if self.undo_stack else ""

    @property
    def redo_label(self) -> str:
        return self.redo_stack[-1].label if self.redo_stack else ""

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (*self.undo_stack, *self.redo_stack))

    # --- saved or not -------------------------------------------------------------------------------

    def mark_saved(self) -> None:
        self._saved_serial = self.undo_stack[-1].serial if self.undo_stack else 0
        self._saved_lost = False

    @property
    def unsaved(self) -> bool:
        """Whether the state differs from the last save (or the case's opening) by some recorded action."""
        if self._saved_lost:
            return True
        top = self.undo_stack[-1].serial if self.undo_stack else 0
        return top != self._saved_serial

    def clear(self) -> None:
        """A new case: nothing to undo, nothing unsaved."""
        self.undo_stack.clear()
        self.redo_stack.clear()
        self._saved_serial = 0
        self._saved_lost = False
