"""Readers for the published folder layouts of the human-parsing benchmarks.

Each benchmark ships its photos and annotations in its own tree, with an id list per split.
The readers below read those trees in place (no conversion step, so nobody has to copy 50k
images into the generic ``images/`` + ``labels/`` layout first) and all satisfy
:class:`~ihp_rt.data.folder.ParsingDataset`, so training and evaluation do not care which
benchmark they read. :func:`open_dataset` picks the reader from the folder's marker folders.

Every id a list names is checked for its image and label file when the reader is built: a
missing file then fails at once with its path, not hours into a training run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ihp_rt.data.folder import IGNORE, IMAGE_SUFFIXES, FolderDataset, PairDataset, ParsingDataset
from ihp_rt.errors import InputError
from ihp_rt.labels import LabelMapping, LabelSet, get_label_set

# Layout name -> how to recognise it; used by open_dataset and its error message.
KNOWN_LAYOUTS = {
    "folder": "images/ + labels/ (+ manifest.json): the generic layout",
    "lip": "TrainVal_images/ + TrainVal_parsing_annotations/ + {train,val}_id.txt (LIP)",
    "cihp": "Training/ or Validation/ with Images/ + Category_ids/ (CIHP)",
    "ppp": "JPEGImages/ + SegmentationPart/ + {train,val}_id.txt (PASCAL-Person-Part)",
    "helen": "train/ or test/ with images/ + labels/ (Helen, preprocessed)",
}


def read_id_list(path: Path) -> list[str]:
    """Ids of a split, one a line; blank lines are skipped and a stray image suffix is dropped.

    Some redistributions of the lists carry ``ID.jpg`` instead of ``ID``; accepting both costs
    nothing and saves editing 30k lines.
    """
    if not path.is_file():
        raise InputError(f"id list not found: {path}")
    ids = []
    for line in path.read_text().splitlines():
        entry = line.strip()
        if not entry:
            continue
        stem = Path(entry).stem if Path(entry).suffix.lower() in IMAGE_SUFFIXES else entry
        ids.append(stem)
    if not ids:
        raise InputError(f"id list {path} is empty")
    return ids


def _find_image(folder: Path, name: str) -> Path | None:
    """``folder/name.jpg`` (the published format), else any other image suffix."""
    for suffix in (".jpg", *IMAGE_SUFFIXES):
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def _check_split(split: str, allowed: tuple[str, ...], layout: str) -> str:
    if split not in allowed:
        raise InputError(f"{layout} has splits {', '.join(allowed)}, not {split!r}")
    return split


def _require_dirs(root: Path, layout: str, *dirs: Path) -> None:
    missing = [d for d in dirs if not d.is_dir()]
    if missing:
        raise InputError(f"{root} does not have the {layout} layout: folder {missing[0]} is missing "
                         f"(expected {KNOWN_LAYOUTS[layout.lower()]})")


class PairListDataset(PairDataset):
    """A benchmark split: pairs named by an id list, in the list's order."""

    def __init__(self, root: Path, layout: str, split: str, ids: list[str], image_dir: Path, label_dir: Path,
                 label_set: LabelSet, ignore_index: int | None, mapping: LabelMapping | None = None) -> None:
        self.root, self.layout, self.split = root, layout, split
        pairs: dict[str, tuple[Path, Path]] = {}
        for name in ids:
            image = _find_image(image_dir, name)
            if image is None:
                raise InputError(f"{layout} {split}: id {name!r} has no image {image_dir / name}.jpg")
            label = label_dir / f"{name}.png"
            if not label.is_file():
                raise InputError(f"{layout} {split}: id {name!r} has no label map {label}")
            pairs[name] = (image, label)
        super().__init__(f"{layout} {split} ({root})", pairs, label_set, ignore_index, mapping)


class LIPDataset(PairListDataset):
    """Look Into Person: ``TrainVal_images/{split}_images/ID.jpg``,
    ``TrainVal_parsing_annotations/{split}_segmentations/ID.png``, ids in ``{split}_id.txt``."""

    def __init__(self, root: str | Path, split: str = "train", mapping: LabelMapping | None = None) -> None:
        root = Path(root)
        split = _check_split(split, ("train", "val"), "LIP")
        images = root / "TrainVal_images" / f"{split}_images"
        labels = root / "TrainVal_parsing_annotations" / f"{split}_segmentations"
        _require_dirs(root, "LIP", images, labels)
        super().__init__(root, "LIP", split, read_id_list(root / f"{split}_id.txt"), images, labels,
                         get_label_set("lip"), IGNORE, mapping)


class CIHPDataset(PairListDataset):
    """Crowd Instance-level Human Parsing: ``Training/Images/ID.jpg`` + ``Training/Category_ids/ID.png``
    with ids in ``Training/train_id.txt`` (``Validation/`` and ``val_id.txt`` for ``val``).

    Only the semantic ``Category_ids`` are read; the instance maps are not needed for parsing.
    """

    def __init__(self, root: str | Path, split: str = "train", mapping: LabelMapping | None = None) -> None:
        root = Path(root)
        split = _check_split(split, ("train", "val"), "CIHP")
        base = root / ("Training" if split == "train" else "Validation")
        _require_dirs(root, "CIHP", base / "Images", base / "Category_ids")
        super().__init__(root, "CIHP", split, read_id_list(base / f"{split}_id.txt"), base / "Images",
                         base / "Category_ids", get_label_set("cihp"), IGNORE, mapping)


class PPPDataset(PairListDataset):
    """PASCAL-Person-Part, preprocessed: ``JPEGImages/ID.jpg`` + ``SegmentationPart/ID.png`` (ids 0..6).

    The split list is ``{split}_id.txt`` (one id a line); if that is absent, the
    ``pascal_person_part_{split}_list.txt`` of other codebases is read instead, whose lines are
    ``/JPEGImages/ID.jpg /SegmentationPart/ID.png`` (the id is the first path's stem).
    """

    def __init__(self, root: str | Path, split: str = "train", mapping: LabelMapping | None = None) -> None:
        root = Path(root)
        split = _check_split(split, ("train", "val"), "PPP")
        _require_dirs(root, "PPP", root / "JPEGImages", root / "SegmentationPart")
        ids_path, list_path = root / f"{split}_id.txt", root / f"pascal_person_part_{split}_list.txt"
        if ids_path.is_file():
            ids = read_id_list(ids_path)
        elif list_path.is_file():
            ids = [Path(line.split()[0]).stem for line in list_path.read_text().splitlines() if line.strip()]
            if not ids:
                raise InputError(f"id list {list_path} is empty")
        else:
            raise InputError(f"PPP {split}: neither {ids_path.name} nor {list_path.name} is in {root}")
        super().__init__(root, "PPP", split, ids, root / "JPEGImages", root / "SegmentationPart",
                         get_label_set("ppp"), IGNORE, mapping)


class HelenDataset(PairListDataset):
    """Helen face parsing, preprocessed: ``{split}/images/ID.jpg`` + ``{split}/labels/ID.png`` (11 classes).

    There is no id list: every image of the split is a sample (sorted by name), and each must
    have its label map, because a silently dropped test image would change the benchmark.
    Helen marks no pixel as unlabelled, so ``ignore_index`` is None.
    """

    def __init__(self, root: str | Path, split: str = "test", mapping: LabelMapping | None = None) -> None:
        root = Path(root)
        split = _check_split(split, ("train", "test"), "Helen")
        images, labels = root / split / "images", root / split / "labels"
        _require_dirs(root, "Helen", images, labels)
        ids = sorted(p.stem for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not ids:
            raise InputError(f"Helen {split}: no images in {images}")
        super().__init__(root, "Helen", split, ids, images, labels, get_label_set("helen"), None, mapping)


def detect_layout(path: str | Path) -> str:
    """The layout name of a folder (a key of ``KNOWN_LAYOUTS``), from its marker folders."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"data folder not found: {root}")
    if (root / "images").is_dir() and (root / "labels").is_dir():
        return "folder"
    if (root / "TrainVal_images").is_dir() or (root / "TrainVal_parsing_annotations").is_dir():
        return "lip"
    if any((root / d / "Category_ids").is_dir() or (root / d / "Images").is_dir() for d in ("Training", "Validation")):
        return "cihp"
    if (root / "JPEGImages").is_dir() and (root / "SegmentationPart").is_dir():
        return "ppp"
    if any((root / s / "images").is_dir() for s in ("train", "test")):
        return "helen"
    known = "; ".join(f"{k}: {v}" for k, v in KNOWN_LAYOUTS.items())
    raise InputError(f"{root} has no known data layout. Known layouts: {known}")


def open_dataset(path: str | Path, split: str | None = None, mapping: LabelMapping | None = None) -> ParsingDataset:
    """The right reader for a folder in any known layout.

    ``split`` defaults to the evaluation split: ``val`` for LIP, CIHP and PPP, ``test`` for
    Helen. The generic layout has no splits (pick names with ``FolderDataset.subset``), so a
    split there is refused rather than silently evaluating on everything.
    """
    layout = detect_layout(path)
    if layout == "folder":
        if split is not None:
            raise InputError(f"{path} is a generic images/ + labels/ folder without splits; "
                             f"drop split={split!r} or use FolderDataset(...).subset(names)")
        return FolderDataset(path, mapping)
    if layout == "helen":
        return HelenDataset(path, split or "test", mapping)
    reader = {"lip": LIPDataset, "cihp": CIHPDataset, "ppp": PPPDataset}[layout]
    return reader(path, split or "val", mapping)


def dataset_for_labels(path: str | Path, labels: LabelSet, split: str | None = None,
                       mapping: str | None = None) -> ParsingDataset:
    """A folder of any known layout, in ``labels`` (a model's label set).

    Classes are matched by name (:func:`~ihp_rt.labels.class_key`: case, spaces, '-' and '_'
    aside), never by id, so a manifest may number and spell them as its data set does. Data in
    the model's own classes is read as it is; other data through the built-in label mapping into
    ``labels`` that knows every class the data names (CIHP's torso-skin included), or through
    ``mapping`` when it is given by name. Between two built-in mappings that would read the data
    differently it does not choose silently: it asks for ``mapping``.
    """
    from ihp_rt.labels import get_label_mapping, label_mapping_names

    if mapping is not None:
        chosen = get_label_mapping(mapping)
        if chosen.target.names != labels.names:
            raise InputError(f"label mapping {chosen.name!r} gives {chosen.target.name!r} classes, the model predicts "
                             f"{labels.name!r}")
        return open_dataset(path, split, chosen)  # refused there, naming them, if the data has classes it lacks
    data = open_dataset(path, split)
    if data.label_set.names == labels.names:
        return data
    own = LabelMapping.identity(labels)
    if not own.unknown(data.label_set):  # the model's classes, spelt or numbered another way
        return open_dataset(path, split, own)
    candidates = [m for m in map(get_label_mapping, label_mapping_names()) if m.target.names == labels.names]
    fitting = [m for m in candidates if not m.unknown(data.label_set)]
    if any(not np.array_equal(m.lut_for(data.label_set), fitting[0].lut_for(data.label_set)) for m in fitting[1:]):
        raise InputError(f"the data's classes fit several label mappings that read them differently "
                         f"({', '.join(m.name for m in fitting)}); choose one with --label-map")
    if fitting:
        return open_dataset(path, split, fitting[0])
    misses = "; ".join(f"{name}: no {', '.join(m.unknown(data.label_set)[:6])}"
                       for name, m in [("the model's classes", own), *((m.name, m) for m in candidates)])
    raise InputError(f"the data's {data.label_set.num_classes} classes are not the model's {labels.num_classes} "
                     f"({labels.name}) and no label mapping into them reads every one ({misses}); name classes "
                     "as the model or a mapping's source does in the data's manifest.json, or choose a mapping "
                     "with --label-map")
