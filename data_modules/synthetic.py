"""`shapes`: the embedded, procedural editing dataset (docs/data.md).

Sample i of a split is rendered from seed `split_offset + i`, so it needs no files and is identical on every
machine. A scene holds 1–3 objects on a plain or gradient background; the first object is the *subject*: it
carries an identity texture (stripes of one orientation and period, plus an optional centre dot) that is a
luminance pattern, so it survives a recolour. One edit is applied to the subject or the background.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from data_modules.base import EditDataModule, EditSample, register

COLOURS = {  # object colours, RGB in [0, 1]
    "red": (0.9, 0.12, 0.1), "orange": (0.98, 0.55, 0.05), "yellow": (0.95, 0.9, 0.1), "green": (0.15, 0.75, 0.2),
    "cyan": (0.1, 0.85, 0.9), "blue": (0.15, 0.3, 0.95), "purple": (0.6, 0.2, 0.85), "pink": (0.98, 0.5, 0.75),
}
BACKGROUNDS = {  # background colours, darker than every object colour so objects stay visible
    "black": (0.04, 0.04, 0.04), "gray": (0.4, 0.4, 0.4), "navy": (0.08, 0.1, 0.35),
    "brown": (0.35, 0.2, 0.08), "olive": (0.33, 0.35, 0.08), "maroon": (0.35, 0.05, 0.12),
}
SHAPES = ("circle", "square", "triangle", "diamond")
EDITS = ("recolour", "background", "move", "resize", "hat")
IDENTITY_KEEPING = ("recolour", "background", "hat")  # the subject's texture is drawn as it was: IPS is scored there
HAT_COLOUR = (0.97, 0.97, 0.97)
# identity = orientation index * 4 + period index * 2 + dot
ORIENTATIONS = ((0.0, "horizontally"), (90.0, "vertically"), (45.0, "diagonally"), (135.0, "crosswise"))
PERIODS = ((4.0, "finely"), (7.0, "broadly"))
NUM_IDENTITIES = len(ORIENTATIONS) * len(PERIODS) * 2
ATTRIBUTE_NAMES = tuple(COLOURS) + SHAPES + ("hat",)
SPLIT_OFFSETS = {"train": 0, "val": 10_000_000, "test": 20_000_000}  # disjoint seed ranges


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    cx: float  # centre, in units of the image side (0..1)
    cy: float
    r: float   # radius, in units of the image side


@dataclass(frozen=True)
class Scene:
    background: str
    gradient: bool
    objects: tuple[Obj, ...]  # objects[0] is the subject, drawn last (on top)
    identity: int
    hat: bool


@lru_cache(maxsize=8)
def _grid(res: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:res, 0:res].astype(np.float32) + 0.5  # pixel centres
    return xs / res, ys / res


def shape_mask(o: Obj, res: int) -> np.ndarray:
    """(res, res) bool: pixels covered by object `o`."""
    x, y = _grid(res)
    dx, dy = x - o.cx, y - o.cy
    if o.shape == "circle":
        return dx * dx + dy * dy <= o.r * o.r
    if o.shape == "square":
        return (np.abs(dx) <= 0.85 * o.r) & (np.abs(dy) <= 0.85 * o.r)
    if o.shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.15 * o.r
    if o.shape == "triangle":  # apex up at cy - r, base at cy + 0.8 r
        return (dy >= -o.r) & (dy <= 0.8 * o.r) & (np.abs(dx) <= (dy + o.r) / 1.8)
    raise ValueError(f"unknown shape {o.shape!r}")


def hat_mask(o: Obj, res: int) -> np.ndarray:
    """(res, res) bool: a small triangle sitting on top of object `o`."""
    x, y = _grid(res)
    top = o.cy - (0.85 * o.r if o.shape == "square" else o.r)
    h = max(0.6 * o.r, 2.5 / res)
    dy = y - (top - h)
    return (dy >= 0) & (y <= top) & (np.abs(x - o.cx) <= dy / h * 0.55 * o.r + 0.5 / res)


def identity_texture(identity: int, o: Obj, res: int) -> np.ndarray:
    """(res, res) float luminance multiplier in [0.55, 1]: the subject's identity pattern."""
    x, y = _grid(res)
    angle, _ = ORIENTATIONS[identity // 4]
    period, _ = PERIODS[(identity // 2) % 2]
    theta = np.deg2rad(angle)
    u = ((x - o.cx) * np.sin(theta) + (y - o.cy) * np.cos(theta)) * res  # pixels across the stripes
    tex = np.where(np.sin(2 * np.pi * u / period) > 0, 1.0, 0.55).astype(np.float32)
    if identity % 2:  # dot code
        tex[(x - o.cx) ** 2 + (y - o.cy) ** 2 <= (1.6 / res) ** 2] = 0.3
    return tex


def render(scene: Scene, res: int) -> np.ndarray:
    """(res, res, 3) float32 in [0, 1]."""
    _, y = _grid(res)
    img = np.empty((res, res, 3), dtype=np.float32)
    img[:] = BACKGROUNDS[scene.background]
    if scene.gradient:
        img *= (0.6 + 0.8 * y)[..., None]
    for o in scene.objects[::-1]:  # subject last
        m = shape_mask(o, res)
        colour = np.asarray(COLOURS[o.colour], dtype=np.float32)
        if o is scene.objects[0]:
            img[m] = colour * identity_texture(scene.identity, o, res)[m][:, None]
        else:
            img[m] = colour
    if scene.hat:
        img[hat_mask(scene.objects[0], res)] = HAT_COLOUR
    return np.clip(img, 0.0, 1.0)


def subject_region(scene: Scene, res: int) -> np.ndarray:
    m = shape_mask(scene.objects[0], res)
    return m | hat_mask(scene.objects[0], res) if scene.hat else m


def location_words(o: Obj) -> str:
    """Where the object is, as a phrase: "in the upper left", "on the right", "at the top", "in the centre"."""
    row = "upper" if o.cy < 0.38 else "lower" if o.cy > 0.62 else ""
    col = "left" if o.cx < 0.38 else "right" if o.cx > 0.62 else ""
    if row and col:
        return f"in the {row} {col}"
    if row:
        return "at the top" if row == "upper" else "at the bottom"
    return f"on the {col}" if col else "in the centre"


def texture_words(identity: int) -> str:
    orient = ORIENTATIONS[identity // 4][1]
    period = PERIODS[(identity // 2) % 2][1]
    dot = " dotted" if identity % 2 else ""
    return f"{period} {orient} striped{dot}"


def random_scene(rng: np.random.Generator) -> Scene:
    n = int(rng.integers(1, 4))
    objs = []
    for _ in range(n):
        r = float(rng.uniform(0.13, 0.2))
        objs.append(Obj(shape=str(rng.choice(SHAPES)), colour=str(rng.choice(list(COLOURS))),
                        cx=float(rng.uniform(r + 0.02, 1 - r - 0.02)), cy=float(rng.uniform(r + 0.12, 1 - r - 0.02)),
                        r=r))
    return Scene(background=str(rng.choice(list(BACKGROUNDS))), gradient=bool(rng.random() < 0.5),
                 objects=tuple(objs), identity=int(rng.integers(NUM_IDENTITIES)), hat=bool(rng.random() < 0.3))


def apply_edit(scene: Scene, kind: str, rng: np.random.Generator) -> tuple[Scene, str, str]:
    """Return (edited scene, prompt P, expressive instruction I) for one edit of `kind`."""
    s = scene.objects[0]
    desc = f"{s.colour} {texture_words(scene.identity)} {s.shape} {location_words(s)}"
    keep = "keep its stripes, shape and the rest of the scene unchanged"
    if kind == "recolour":
        new = str(rng.choice([c for c in COLOURS if c != s.colour]))
        edited = dataclasses.replace(s, colour=new)
        prompt, instr = f"make the {s.shape} {new}", f"change the {desc} to {new}, {keep}"
    elif kind == "background":
        new = str(rng.choice([c for c in BACKGROUNDS if c != scene.background]))
        style = "gradient" if scene.gradient else "plain"
        others = ", ".join(f"{o.colour} {o.shape}" for o in scene.objects)
        return (dataclasses.replace(scene, background=new), f"make the background {new}",
                f"replace the {style} {scene.background} background with a {style} {new} one, "
                f"keep the {others} unchanged")
    elif kind == "move":
        step = 0.22
        moves = {"left": (-step, 0), "right": (step, 0), "up": (0, -step), "down": (0, step)}
        lo_y = s.r + 0.12  # room for a hat
        legal = [d for d, (dx, dy) in moves.items()
                 if s.r <= s.cx + dx <= 1 - s.r and lo_y <= s.cy + dy <= 1 - s.r]
        if not legal:
            return apply_edit(scene, "recolour", rng)
        d = str(rng.choice(legal))
        dx, dy = moves[d]
        edited = dataclasses.replace(s, cx=s.cx + dx, cy=s.cy + dy)
        prompt = f"move the {s.shape} {d}"
        instr = f"move the {desc} {d} so that it sits {location_words(edited)}, keep its colour, stripes and the rest unchanged"
    elif kind == "resize":
        room = min(s.cx, 1 - s.cx, s.cy - 0.1, 1 - s.cy)  # largest radius that stays in the frame
        bigger = room >= 1.3 * s.r and rng.random() < 0.5
        r = min(1.45 * s.r, room) if bigger else 0.65 * s.r
        edited = dataclasses.replace(s, r=r)
        word = "bigger" if bigger else "smaller"
        prompt = f"make the {s.shape} {word}"
        instr = f"make the {desc} {word}, keep its colour, stripes, position and the rest unchanged"
    elif kind == "hat":
        if scene.hat:
            return (dataclasses.replace(scene, hat=False), f"remove the hat from the {s.shape}",
                    f"remove the white hat from the top of the {desc}, keep the {s.shape} and the rest unchanged")
        return (dataclasses.replace(scene, hat=True), f"give the {s.shape} a hat",
                f"put a small white triangular hat on top of the {desc}, keep the {s.shape} and the rest unchanged")
    else:
        raise ValueError(f"unknown edit {kind!r}; expected one of {EDITS}")
    return dataclasses.replace(scene, objects=(edited, *scene.objects[1:])), prompt, instr


def attributes(scene: Scene) -> np.ndarray:
    """(A,) multi-hot over ATTRIBUTE_NAMES: object colours, object shapes, whether a hat is worn."""
    a = np.zeros(len(ATTRIBUTE_NAMES), dtype=np.float32)
    for o in scene.objects:
        a[ATTRIBUTE_NAMES.index(o.colour)] = 1
        a[ATTRIBUTE_NAMES.index(o.shape)] = 1
    a[-1] = float(scene.hat)
    return a


def make_sample(seed: int, res: int, edits: tuple[str, ...] = EDITS) -> EditSample:
    """Render example `seed` at `res` pixels (steps: scene, edit, render both, mask of changed objects)."""
    rng = np.random.default_rng(seed)
    scene = random_scene(rng)
    kind = str(rng.choice(edits))
    edited, prompt, instruction = apply_edit(scene, kind, rng)
    s, e = scene.objects[0], edited.objects[0]
    if kind == "move" and (e.cx, e.cy) == (s.cx, s.cy):
        kind = "recolour"  # no room to move: apply_edit recoloured instead
    src, tgt = render(scene, res), render(edited, res)
    if kind == "background":  # every pixel no object covers
        occupied = subject_region(scene, res).copy()
        for o in scene.objects[1:]:
            occupied |= shape_mask(o, res)
        mask = ~occupied
    else:
        mask = subject_region(scene, res) | subject_region(edited, res)

    def to_tensor(img: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(img).permute(2, 0, 1) * 2 - 1  # (3, H, W) in [-1, 1]

    return EditSample(source=to_tensor(src), target=to_tensor(tgt), mask=torch.from_numpy(mask[None].astype(np.float32)),
                      prompt=prompt, instruction=instruction, attributes=torch.from_numpy(attributes(edited)),
                      identity=scene.identity, keeps_identity=kind in IDENTITY_KEEPING)


class ShapesDataset(Dataset):
    """`size` samples of one split, sample i from seed `offset + i`."""

    def __init__(self, offset: int, size: int, resolution: int, edits: tuple[str, ...] = EDITS):
        self.offset, self.size, self.resolution, self.edits = offset, size, resolution, edits

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> EditSample:
        if not 0 <= index < self.size:
            raise IndexError(index)
        return make_sample(self.offset + index, self.resolution, self.edits)


@register
class ShapesDataModule(EditDataModule):
    """The embedded procedural dataset.

    Args:
        train_size / val_size / test_size: samples per split (splits are disjoint seed ranges).
        edits: which edit kinds to draw from (default: all of EDITS).
    """

    name = "shapes"

    def __init__(self, resolution: int = 32, batch_size: int = 16, num_workers: int = 0, train_size: int = 100_000,
                 val_size: int = 64, test_size: int = 256, edits: tuple[str, ...] = EDITS):
        super().__init__(resolution, batch_size, num_workers)
        unknown = set(edits) - set(EDITS)
        if unknown or not edits:
            raise ValueError(f"edits must be a non-empty subset of {EDITS}, got {edits}")
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.edits = tuple(edits)

    @property
    def num_attributes(self) -> int:
        return len(ATTRIBUTE_NAMES)

    @property
    def num_identities(self) -> int:
        return NUM_IDENTITIES

    def make_split(self, split: str) -> Dataset:
        return ShapesDataset(SPLIT_OFFSETS[split], self.sizes[split], self.resolution, self.edits)
