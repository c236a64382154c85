"""One dataset interface for both worlds, seeded few-shot sampling and base/new splits.

Introduced in notebook 01 (tiny-world tasks) and notebook 08 (CoOp-format folders).

An :class:`ImageSet` holds raw images (uint8 arrays in the tiny world, file paths in the real
one), integer labels, class names and the dataset's prompt templates.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import pathlib
import random

import numpy as np

from cliptune import runtime, world


@dataclasses.dataclass
class ImageSet:
    name: str
    images: object  # np.ndarray [N, H, W, 3] uint8, or a list of image file paths
    labels: np.ndarray
    classnames: tuple
    templates: tuple
    domain: str = "photo"
    scenes: tuple | None = None  # tiny world only: what each image shows (for the captioner)
    base: tuple | None = None  # base classes of the base-to-new split; None: the first half
    # ((key of a set these images were taken from, their indices there), ...), nearest first:
    # lets the feature cache slice a subset's features out of an ancestor's cached ones
    origin: tuple = ()

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def key(self) -> str:
        """A short fingerprint of exactly which images these are, for feature caches."""
        h = hashlib.sha1(self.name.encode())
        h.update(np.asarray(self.labels, np.int64).tobytes())
        if isinstance(self.images, np.ndarray):
            h.update(self.images[:: max(1, len(self) // 64)].tobytes())
        else:
            h.update("\n".join(map(str, self.images)).encode())
        return f"{self.name}-{h.hexdigest()[:10]}"

    def raw(self, idx):
        """The raw images at ``idx``: a uint8 array, or a list of PIL images."""
        idx = np.asarray(idx)
        if isinstance(self.images, np.ndarray):
            return self.images[idx]
        return [open_image(self.images[i]) for i in idx]

    def subset(self, idx, name: str | None = None) -> "ImageSet":
        idx = np.asarray(idx, dtype=np.int64)
        images = self.images[idx] if isinstance(self.images, np.ndarray) else \
            [self.images[i] for i in idx]
        scenes = tuple(self.scenes[i] for i in idx) if self.scenes is not None else None
        origin = ((self.key, idx),) + tuple((k, i[idx]) for k, i in self.origin)
        return dataclasses.replace(self, name=name or self.name, images=images,
                                   labels=np.asarray(self.labels)[idx], scenes=scenes,
                                   origin=origin)

    def select_classes(self, classes, name: str | None = None) -> "ImageSet":
        """Keep the images of ``classes`` (names or indices) and relabel them 0..k-1."""
        index = []
        for c in classes:
            if isinstance(c, str):
                if c not in self.classnames:
                    close = difflib.get_close_matches(c, self.classnames, n=3)
                    raise KeyError(f"{self.name} has no class {c!r} (close: {close}); its "
                                   f"{len(self.classnames)} classes are in .classnames")
                index.append(self.classnames.index(c))
            else:
                index.append(int(c))
        remap = {old: new for new, old in enumerate(index)}
        keep = np.flatnonzero(np.isin(self.labels, index))
        out = self.subset(keep, name=name)
        out.labels = np.array([remap[int(y)] for y in out.labels], dtype=np.int64)
        out.classnames = tuple(self.classnames[i] for i in index)
        out.base = None  # a class subset is split as CoOp splits, unless told otherwise
        return out


def open_image(path):
    """An image file as 8-bit RGB. 16-bit and 32-bit greyscale images (PIL modes I;16, I, F)
    are scaled to 0-255, not clipped (PIL's own convert("RGB") saturates them to white); a
    damaged or truncated file is an error that names it."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode.startswith("I;16") or im.mode in ("I", "F"):
                arr = np.asarray(im, dtype=np.float64)
                if im.mode.startswith("I;16") or (im.mode == "I" and arr.max(initial=0) > 255):
                    scale = 65535.0 if arr.max(initial=0) > 255 or im.mode.startswith("I;16") \
                        else 255.0
                elif im.mode == "F" and arr.max(initial=0) <= 1.0:
                    scale = 1.0
                else:
                    scale = 255.0
                arr = np.clip(np.rint(arr / scale * 255.0), 0, 255).astype(np.uint8)
                return Image.fromarray(arr, "L").convert("RGB")
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:  # PIL: UnidentifiedImageError, truncation
        raise DatasetError(f"cannot read image {path}: {err}. The file is damaged, truncated or "
                           "not an image: download it again, or remove it from the dataset "
                           "(its split file or folder)") from err


# --------------------------------------------------------------------------- the tiny world
def tiny(task: str, split: str = "test", domain: str = "photo", seed: int = 0) -> ImageSet:
    """A tiny-world task split, e.g. ``tiny("objects", "test", "sketch")``.

    ``seed`` draws another split of the same kind (other scenes); experiments use seed 0.
    """
    images, labels, scenes = world.task_split(task, split, domain, seed)
    spec = world.TASKS[task]
    name = f"{task}/{split}/{domain}" + (f"/seed{seed}" if seed else "")
    return ImageSet(name, images, labels.astype(np.int64),
                    spec.classnames, spec.templates, domain, scenes, world.base_classes(task))


# --------------------------------------------------------------------------- splits
def concat(sets, name: str) -> ImageSet:
    """The images of ``sets`` (arrays of the same classes, in order) as one ImageSet ``name``."""
    sets = list(sets)
    if not sets:
        raise ValueError("concat needs at least one ImageSet")
    first = sets[0]
    for ds in sets[1:]:
        if ds.classnames != first.classnames:
            raise ValueError(f"{ds.name} has other classes than {first.name}; concatenate sets "
                             "of the same classes only")
        if not isinstance(ds.images, np.ndarray) or not isinstance(first.images, np.ndarray):
            raise ValueError("concat joins image arrays (tiny-world sets), not file lists")
    scenes = None if any(ds.scenes is None for ds in sets) else \
        tuple(s for ds in sets for s in ds.scenes)
    return dataclasses.replace(first, name=name,
                               images=np.concatenate([ds.images for ds in sets]),
                               labels=np.concatenate([np.asarray(ds.labels) for ds in sets]),
                               scenes=scenes, origin=())


def few_shot(ds: ImageSet, shots: int, seed: int, cache_dir=None) -> ImageSet:
    """``shots`` images per class, drawn as CoOp draws them (Python's random, seeded).

    With ``cache_dir`` the drawn indices are cached as JSON (CoOp caches a pickle; a JSON file
    cannot run code when loaded), so a split is drawn once and reused.
    """
    if shots <= 0:
        raise ValueError(f"shots must be positive, not {shots}")
    path = pathlib.Path(cache_dir) / f"shot_{shots}-seed_{seed}.json" if cache_dir else None
    if path is not None and path.exists():
        idx = json.loads(path.read_text())["indices"]
    else:
        rng = random.Random(seed)
        idx = []
        for c in range(len(ds.classnames)):
            members = np.flatnonzero(ds.labels == c).tolist()
            idx += rng.sample(members, shots) if len(members) >= shots else \
                [rng.choice(members) for _ in range(shots)] if members else []
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"dataset": ds.name, "indices": idx}))
    return ds.subset(idx, name=f"{ds.name}/{shots}shot-s{seed}")


def base_new(ds: ImageSet) -> tuple[ImageSet, ImageSet]:
    """The base-to-new split: ``ds.base`` (a tiny task's world.base_classes) or, as CoOp
    splits, the first ceil(C/2) classes as base; the rest, in class order, are new."""
    base = ds.base or world.coop_base(ds.classnames)
    new = [c for c in ds.classnames if c not in base]
    return (ds.select_classes(base, name=f"{ds.name}/base"),
            ds.select_classes(new, name=f"{ds.name}/new"))


# --------------------------------------------------------------------------- CoOp layout
@dataclasses.dataclass(frozen=True)
class CoopSpec:
    folder: str
    image_dir: str
    split_file: str | None
    template: str
    renames: tuple = ()


COOP_DATASETS = {
    "imagenet": CoopSpec("imagenet", "images", None, "a photo of a {}."),
    "caltech101": CoopSpec("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json",
                           "a photo of a {}.", (("airplanes", "airplane"), ("Faces", "face"),
                                                ("Leopards", "leopard"), ("Motorbikes", "motorbike"))),
    "oxford_pets": CoopSpec("oxford_pets", "images", "split_zhou_OxfordPets.json",
                            "a photo of a {}, a type of pet."),
    "stanford_cars": CoopSpec("stanford_cars", "", "split_zhou_StanfordCars.json",
                              "a photo of a {}."),
    "oxford_flowers": CoopSpec("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json",
                               "a photo of a {}, a type of flower."),
    "food101": CoopSpec("food-101", "images", "split_zhou_Food101.json",
                        "a photo of {}, a type of food."),
    "fgvc_aircraft": CoopSpec("fgvc_aircraft", "images", None,
                              "a photo of a {}, a type of aircraft."),
    "sun397": CoopSpec("sun397", "SUN397", "split_zhou_SUN397.json", "a photo of a {}."),
    "dtd": CoopSpec("dtd", "images", "split_zhou_DescribableTextures.json", "{} texture."),
    "eurosat": CoopSpec("eurosat", "2750", "split_zhou_EuroSAT.json",
                        "a centered satellite photo of {}.",
                        (("AnnualCrop", "Annual Crop Land"), ("Forest", "Forest"),
                         ("HerbaceousVegetation", "Herbaceous Vegetation Land"),
                         ("Highway", "Highway or Road"), ("Industrial", "Industrial Buildings"),
                         ("Pasture", "Pasture Land"), ("PermanentCrop", "Permanent Crop Land"),
                         ("Residential", "Residential Buildings"), ("River", "River"),
                         ("SeaLake", "Sea or Lake"))),
    "ucf101": CoopSpec("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json",
                       "a photo of a person doing {}."),
    "imagenetv2": CoopSpec("imagenetv2", "imagenetv2-matched-frequency-format-val", None,
                           "a photo of a {}."),
    "imagenet_sketch": CoopSpec("imagenet-sketch", "images", None, "a photo of a {}."),
    "imagenet_a": CoopSpec("imagenet-adversarial", "imagenet-a", None, "a photo of a {}."),
    "imagenet_r": CoopSpec("imagenet-rendition", "imagenet-r", None, "a photo of a {}."),
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".JPEG", ".JPG", ".PNG")


class DatasetError(ValueError):
    pass


def data_root(root=None) -> pathlib.Path:
    return pathlib.Path(root or os.environ.get("DATA") or os.environ.get("CLIPTUNE_COOP_DATA")
                        or runtime.DATA_DIR / "coop")


def coop(name: str, split: str = "test", root=None) -> ImageSet:
    """A dataset in the CoOp layout under ``root`` (default ``$DATA``), e.g. ``coop("dtd")``."""
    if name not in COOP_DATASETS:
        close = difflib.get_close_matches(name, list(COOP_DATASETS), n=3)
        raise KeyError(f"unknown dataset {name!r} (close: {close}); known: {sorted(COOP_DATASETS)}")
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, not {split!r}")
    spec = COOP_DATASETS[name]
    base = data_root(root) / spec.folder
    if not base.is_dir():
        shown = base.relative_to(runtime.ROOT) if base.is_relative_to(runtime.ROOT) else base
        raise FileNotFoundError(
            f"dataset folder {shown} does not exist. Put the {name!r} dataset there in the CoOp "
            f"layout ({shown}/{spec.image_dir}/"
            f"{f' and {shown}/{spec.split_file}' if spec.split_file else ''}; see CoOp's "
            "DATASETS.md), or point to your data root with coop(..., root=...) or the DATA "
            "environment variable.")
    if spec.split_file is not None:
        paths, labels, names = _read_split(base / spec.split_file, split, base / spec.image_dir)
    elif name == "fgvc_aircraft":
        paths, labels, names = _read_aircraft(base, split)
    else:
        paths, labels, names = _read_imagenet_like(name, base, spec, split)
    rename = dict(spec.renames)
    names = tuple(rename.get(n, n).replace("_", " ") for n in names)
    return ImageSet(f"{name}/{split}", paths, np.asarray(labels, np.int64), names,
                    (spec.template,), "photo")


def _read_split(path: pathlib.Path, split: str, image_dir: pathlib.Path):
    if not path.exists():
        raise FileNotFoundError(f"split file {path} is missing; download it from the CoOp "
                                "repository's DATASETS.md and place it there")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"split file {path} is not valid JSON ({err})") from err
    if not isinstance(content, dict) or split not in content:
        raise DatasetError(f"split file {path} has no {split!r} list; expected keys "
                           "'train', 'val', 'test' each holding [path, label, classname] items")
    # every list is checked, not only the one asked for: class names come from all of them
    for name, items in content.items():
        if not isinstance(items, list):
            raise DatasetError(f"split file {path}: {name!r} holds a {type(items).__name__}, not "
                               "a list of [relative_path, integer_label, classname] items")
        for i, item in enumerate(items):
            if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                    and isinstance(item[1], int) and not isinstance(item[1], bool)
                    and item[1] >= 0 and isinstance(item[2], str)):
                raise DatasetError(f"split file {path}: item {i} of {name!r} is {item!r}, not "
                                   "[relative_path, integer_label, classname]; fix or remove "
                                   "that item (or download the split file again)")
    names: dict[int, str] = {}
    paths, labels = [], []
    for rel, label, cname in content[split]:
        paths.append(str(image_dir / rel))
        labels.append(label)
        names.setdefault(label, cname)
    for split_items in content.values():  # class names come from every split, so all are known
        for rel, label, cname in split_items:
            names.setdefault(label, cname)
    if sorted(names) != list(range(len(names))):
        raise DatasetError(f"split file {path}: labels are not 0..{len(names) - 1}")
    return paths, labels, tuple(names[i] for i in range(len(names)))


def _read_aircraft(base: pathlib.Path, split: str):
    variants = [ln.strip() for ln in (base / "variants.txt").read_text().splitlines() if ln.strip()]
    lookup = {v: i for i, v in enumerate(variants)}
    paths, labels = [], []
    for line in (base / f"images_variant_{split}.txt").read_text().splitlines():
        if not line.strip():
            continue
        image_id, variant = line.strip().split(" ", 1)
        if variant not in lookup:
            raise DatasetError(f"{base}/images_variant_{split}.txt names unknown variant {variant!r}")
        paths.append(str(base / "images" / f"{image_id}.jpg"))
        labels.append(lookup[variant])
    return paths, labels, tuple(variants)


def _read_classnames(path: pathlib.Path) -> dict[str, str]:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: it lists '<wnid> <class name>' per line "
                                "(CoOp's DATASETS.md links it)")
    out = {}
    for i, line in enumerate(path.read_text().splitlines()):
        if line.strip():
            parts = line.strip().split(" ", 1)
            if len(parts) != 2:
                raise DatasetError(f"{path}: line {i + 1} is not '<wnid> <class name>'")
            out[parts[0]] = parts[1]
    return out


def _read_imagenet_like(name, base, spec, split):
    classnames = _read_classnames(base / "classnames.txt")
    folder = base / spec.image_dir
    if name == "imagenet":
        folder = folder / ("train" if split == "train" else "val")
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    wnids = list(classnames)
    if name == "imagenetv2":  # folders are 0..999 in classnames.txt order
        dirs = [(folder / str(i), i) for i in range(len(wnids))]
        names = tuple(classnames[w] for w in wnids)
    else:
        present = sorted(d.name for d in folder.iterdir() if d.is_dir())
        unknown = [d for d in present if d not in classnames]
        if unknown:
            raise DatasetError(f"{folder} holds class folders not in classnames.txt: {unknown[:5]}")
        dirs = [(folder / w, i) for i, w in enumerate(present)]
        names = tuple(classnames[w] for w in present)
    paths, labels = [], []
    for d, label in dirs:
        for f in sorted(d.iterdir()) if d.is_dir() else []:
            if f.suffix in IMAGE_SUFFIXES:
                paths.append(str(f))
                labels.append(label)
    return paths, labels, names
