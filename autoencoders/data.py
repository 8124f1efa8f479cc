"""Datasets of 96×96 colour images: STL-10 (binary files), photos bundled with scikit-image, a folder.

Every dataset holds its images as uint8 (N, 3, H, W) and returns float32 (3, H, W) in [0, 1]
(the package's one image convention) with an integer label (-1 if none) and the item's index;
`dataset.image_id(i)` and `dataset.split` give each item's stable identity:

- ``stl10:<split>:<index:05d>``           e.g. ``stl10:test:00042``
- ``photos:<split>:<photo>:<index:04d>``  e.g. ``photos:test:chelsea:0003``
- ``folder:<split>:<relative file name>`` e.g. ``folder:test:cats/tom.jpg``
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from percept.contracts import InputError

if TYPE_CHECKING:
    import torch

SOURCES = ("photos", "stl10", "folder:PATH")
STL10_SPLITS = ("train", "test", "unlabeled", "train+unlabeled")
SPLITS = {"photos": ("train", "test"), "folder": ("train", "test"), "stl10": STL10_SPLITS}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm")

# STL-10 binary files each split needs (names as in torchvision's STL10.train_list/test_list).
_STL10_FILES = {
    "train": ("train_X.bin", "train_y.bin"),
    "test": ("test_X.bin", "test_y.bin"),
    "unlabeled": ("unlabeled_X.bin",),
    "train+unlabeled": ("train_X.bin", "train_y.bin", "unlabeled_X.bin"),
}
STL10_FOLDER = "stl10_binary"

# The colour photographs shipped inside scikit-image / scikit-learn (no network needed).
# `cat` is the same picture as `chelsea` and `motorcycle_right` overlaps `motorcycle`, so both
# are left out: a test patch must never have a twin among the training patches.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "motorcycle", "china", "flower")
PHOTO_SHORT_SIDE = 384  # each photo is resized so its shorter side is 4 patches tall
PHOTO_TEST_COLUMNS = 2  # a central band this many patches wide is held out for testing
PHOTO_STRIDE = 32  # train patches overlap by two thirds: several hundred from 8 photos


class ImageSet:
    """A map-style dataset of uint8 images: item i → (float32 (3,H,W) in [0,1], label, i)."""

    def __init__(self, name: str, split: str, images: np.ndarray, labels: np.ndarray, image_ids: Sequence[str],
                 label_names: Sequence[str] = ()) -> None:
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {images.shape}")
        if not (len(images) == len(labels) == len(image_ids)):
            raise ValueError(f"{len(images)} images, {len(labels)} labels and {len(image_ids)} ids differ")
        self.name = name  # the --data value that made it, e.g. "photos" or "folder:/x"
        self.split = split
        self.images = images  # (N, 3, H, W) uint8
        self.labels = np.asarray(labels, dtype=np.int64)
        self.image_ids = list(image_ids)
        self.label_names = list(label_names)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        return to_float(self.images[index]), int(self.labels[index]), int(index)

    def image_id(self, index: int) -> str:
        """The stable id of item `index`."""
        return self.image_ids[index]

    @property
    def image_size(self) -> int:
        """Side length in pixels (images are square)."""
        return int(self.images.shape[-1])

    def tensor(self, indices: Sequence[int] | None = None) -> torch.Tensor:
        """Images as one float32 (N, 3, H, W) tensor in [0, 1]."""
        return to_float(self.images if indices is None else self.images[np.asarray(indices, dtype=np.int64)])

    def subset(self, indices: np.ndarray) -> ImageSet:
        """The images at `indices`, with their labels and ids, as a new set of the same name and split."""
        return ImageSet(self.name, self.split, self.images[indices], self.labels[indices],
                        [self.image_ids[i] for i in indices], self.label_names)

    def summary(self) -> dict:
        """A JSON-able description saved with every run."""
        return {"data": self.name, "split": self.split, "n": len(self), "image_size": self.image_size,
                "labels": self.label_names}


def spread(n_items: int, n: int) -> np.ndarray:
    """min(n, n_items) indices spread evenly over range(n_items), first and last included, sorted and distinct."""
    return np.unique(np.linspace(0, n_items - 1, min(n, n_items)).round().astype(int))


def to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 array (…, 3, H, W) → float32 tensor in [0, 1]: the one conversion into the image convention."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float32 tensor (N, 3, H, W) in [0, 1] → uint8 (N, H, W, 3) for PNG files (round half to even)."""
    import torch

    arr = images.detach().to("cpu", dtype=torch.float32).clamp(0, 1).mul(255).round()
    return arr.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def parse_source(data: str) -> tuple[str, str | None]:
    """Split a --data value into (kind, folder path or None); unknown kinds raise naming the options."""
    if data in ("photos", "stl10"):
        return data, None
    if data.startswith("folder:"):
        path = data[len("folder:"):]
        if not path:
            raise InputError("--data folder: needs a path, e.g. folder:images/")
        return "folder", path
    raise InputError(f"--data {data!r} is not a dataset; choose from {', '.join(SOURCES)}")


def load_dataset(data: str, split: str, *, root: str | Path = "data", image_size: int = 96,
                 download: bool = False, verify: bool = True) -> ImageSet:
    """Load split `split` of dataset `data` ("photos", "stl10" or "folder:PATH") as an ImageSet."""
    kind, path = parse_source(data)
    if split not in SPLITS[kind]:
        raise InputError(f"dataset {kind!r} has no split {split!r}; choose from {', '.join(SPLITS[kind])}")
    if kind == "photos":
        ds = load_photos(split)
    elif kind == "stl10":
        ds = load_stl10(root, split, download=download, verify=verify)
    elif kind == "folder":
        ds = load_folder(path, split, image_size=image_size)
    else:  # parse_source only returns the kinds above
        raise AssertionError(kind)
    if ds.image_size != image_size:
        raise InputError(f"dataset {data!r} has {ds.image_size}×{ds.image_size} images but image size {image_size} was asked for")
    return ds


# --------------------------------------------------------------------------------------------
# STL-10


def stl10_missing(root: str | Path, split: str) -> list[Path]:
    """The binary files split `split` needs that are absent under root/stl10_binary."""
    folder = Path(root) / STL10_FOLDER
    return [folder / name for name in _STL10_FILES[split] if not (folder / name).is_file()]


def _stl10_checksums() -> dict[str, str]:
    from torchvision.datasets import STL10

    return {name: md5 for name, md5 in STL10.train_list + STL10.test_list}


def verify_stl10(root: str | Path, split: str = "train+unlabeled") -> None:
    """Compare the MD5 of each file `split` needs with torchvision's STL10 lists; raise naming a bad file.

    `split="all"` checks every file. This is the integrity step; reading is separate (`load_stl10`).
    """
    names = sorted({n for files in _STL10_FILES.values() for n in files}) if split == "all" else _STL10_FILES[split]
    expected = _stl10_checksums()
    folder = Path(root) / STL10_FOLDER
    for name in names:
        path = folder / name
        if not path.is_file():
            raise InputError(_missing_message(root, [path]))
        digest = _md5(path)
        if digest != expected[name]:
            raise InputError(f"{path}: MD5 {digest} differs from the official {expected[name]} (truncated or "
                             f"corrupt download?); delete it and fetch again with --download")


def _md5(path: Path) -> str:
    """The file's MD5, computed once per process for the same file, size and modification time.

    A grid trains many runs in one process, each loading train+unlabeled: hashing its 2.8 GB
    again for every run would add seconds per run; a changed file changes size or mtime.
    """
    from percept.contracts.provenance import file_hash

    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _MD5_SEEN:
        _MD5_SEEN[key] = file_hash(path, "md5")
    return _MD5_SEEN[key]


_MD5_SEEN: dict[tuple, str] = {}  # (path, size, mtime_ns, inode) → MD5, filled by _md5


def _missing_message(root: str | Path, missing: list[Path]) -> str:
    names = ", ".join(p.name for p in missing)
    return (f"STL-10 file(s) {names} not found in {Path(root) / STL10_FOLDER}/: put the official binary files there "
            f"(extract stl10_binary.tar.gz from http://ai.stanford.edu/~acoates/stl10/ into the data root {root}, "
            f"set with --data-root, default data/), or pass --download to fetch them (2.6 GB)")


def load_stl10(root: str | Path, split: str, *, download: bool = False, verify: bool = True) -> ImageSet:
    """Map an STL-10 split's binary files into memory (np.memmap: read on use); check files exist (and their MD5 if `verify`).

    Nothing is read until images are indexed, so train+unlabeled (2.9 GB) costs no host memory up
    front, only pages the OS may drop again; torchvision's reader would load (and copy) it whole.
    """
    if split not in STL10_SPLITS:
        raise InputError(f"STL-10 has no split {split!r}; choose from {', '.join(STL10_SPLITS)}")
    root = Path(root)
    if download:
        from torchvision.datasets import STL10

        # torchvision downloads, extracts and checks every file's MD5 itself.
        STL10(str(root), split=split, download=True)
    missing = stl10_missing(root, split)
    if missing:
        raise InputError(_missing_message(root, missing))
    if verify:
        verify_stl10(root, split)
    folder = root / STL10_FOLDER
    parts, labels, ids = [], [], []
    for name in (n for n in _STL10_FILES[split] if n.endswith("_X.bin")):
        images = stl10_images(folder / name)
        prefix = name[: -len("_X.bin")]
        if f"{prefix}_y.bin" in _STL10_FILES[split]:
            y = np.fromfile(folder / f"{prefix}_y.bin", dtype=np.uint8).astype(np.int64) - 1  # 1..10 on disk
            if len(y) != len(images):
                raise InputError(f"{folder}: {len(images)} images in {name} but {len(y)} labels in {prefix}_y.bin "
                                 f"for split {split!r}")
        else:
            y = np.full(len(images), -1, dtype=np.int64)  # unlabeled
        parts.append(images)
        labels.append(y)
        ids += [f"stl10:{prefix}:{i:05d}" for i in range(len(images))]
    class_file = folder / "class_names.txt"
    classes = class_file.read_text().splitlines() if class_file.is_file() else ()
    stacked = parts[0] if len(parts) == 1 else StackedImages(parts)
    return ImageSet("stl10", split, stacked, np.concatenate(labels), ids, classes)


STL10_IMAGE_BYTES = 3 * 96 * 96


def stl10_images(path: Path) -> np.ndarray:
    """An STL-10 `*_X.bin` as a read-only (N, 3, 96, 96) uint8 view of a memory map (the file is column-major)."""
    size = path.stat().st_size
    if size % STL10_IMAGE_BYTES:
        raise InputError(f"{path}: {size} bytes is not a whole number of 3×96×96 images")
    if size == 0:
        return np.zeros((0, 3, 96, 96), dtype=np.uint8)
    raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(size // STL10_IMAGE_BYTES, 3, 96, 96))
    return raw.transpose(0, 1, 3, 2)  # each channel is stored column by column (Octave/MATLAB order)


class StackedImages:
    """Several uint8 (N_i, 3, H, W) arrays (memory maps) indexed as one, never copied together unless asked.

    Supports what ImageSet and its users do: len, shape, dtype, ndim, nbytes, an int, a slice, an index or
    boolean array, and `np.asarray` (which does read everything: for small sets only).
    """

    def __init__(self, parts: Sequence[np.ndarray]) -> None:
        self.parts = list(parts)
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])
        self.shape = (int(self.starts[-1]), *self.parts[0].shape[1:])
        self.dtype = self.parts[0].dtype
        self.ndim = len(self.shape)
        self.nbytes = sum(int(p.nbytes) for p in self.parts)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            i = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"image {index} is out of range for {len(self)} images")
            k = int(np.searchsorted(self.starts, i, side="right")) - 1
            return self.parts[k][i - self.starts[k]]
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = np.where(idx < 0, idx + len(self), idx).astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"an index is out of range for {len(self)} images")
        out = np.empty((len(idx), *self.shape[1:]), dtype=self.dtype)
        part = np.searchsorted(self.starts, idx, side="right") - 1
        for k in np.unique(part):
            mask = part == k
            out[mask] = self.parts[k][idx[mask] - self.starts[k]]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = np.concatenate(self.parts)
        return whole if dtype is None else whole.astype(dtype)


def write_stl10_fixture(root: str | Path, images: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> Path:
    """Write STL-10 binary files (column-major uint8 images, 1-based labels) for tests and examples.

    `images[name]` is uint8 (N, 3, 96, 96) in (channel, row, column) order, e.g. images["train_X.bin"];
    `labels[name]` holds 0-based classes, e.g. labels["train_y.bin"].
    """
    folder = Path(root) / STL10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in images.items():
        # The official files store each channel column by column (Octave/MATLAB order).
        np.ascontiguousarray(np.asarray(arr, dtype=np.uint8).transpose(0, 1, 3, 2)).tofile(folder / name)
    for name, arr in labels.items():
        (np.asarray(arr, dtype=np.uint8) + 1).tofile(folder / name)
    return folder


# --------------------------------------------------------------------------------------------
# Photos bundled with scikit-image and scikit-learn


def _read_photo(name: str) -> np.ndarray:
    """One bundled photograph as uint8 (H, W, 3)."""
    if name == "china" or name == "flower":
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image(f"{name}.jpg"), dtype=np.uint8)
    import skimage.data

    if name == "motorcycle":
        img = skimage.data.stereo_motorcycle()[0]  # the left view of the stereo pair
    else:
        img = getattr(skimage.data, name)()
    return np.asarray(img, dtype=np.uint8)[..., :3]


@dataclass(frozen=True)
class PatchPlan:
    """Where the patches of one photo come from (pixel coordinates after resizing)."""

    photo: str
    height: int
    width: int
    test_x: tuple[int, int]  # [start, end) columns of the held-out band
    test: tuple[tuple[int, int], ...]  # top-left (y, x) of the test patches
    train: tuple[tuple[int, int], ...]  # top-left (y, x) of the train patches


def plan_patches(photo: str, height: int, width: int, *, size: int = 96, short_side: int = PHOTO_SHORT_SIDE,
                 test_columns: int = PHOTO_TEST_COLUMNS, stride: int = PHOTO_STRIDE) -> PatchPlan:
    """Cut a photo of (height, width) resized to `short_side`: a central band for test, both sides for train.

    Test patches tile the central band without overlap; train patches slide with `stride` and lie
    entirely left or right of it, so no test pixel is ever in a training patch.
    """
    scale = short_side / min(height, width)
    h, w = round(height * scale), round(width * scale)
    band = test_columns * size
    x0 = (w - band) // 2
    rows = h // size
    y_off = (h - rows * size) // 2
    test = tuple((y_off + r * size, x0 + c * size) for r in range(rows) for c in range(test_columns))
    ys = range(0, h - size + 1, stride)
    train = tuple((y, x) for y in ys for x in list(range(0, x0 - size + 1, stride)) +
                  list(range(x0 + band, w - size + 1, stride)))
    return PatchPlan(photo, h, w, (x0, x0 + band), test, train)


@functools.lru_cache(maxsize=len(PHOTOS))
def _resized_photo(name: str, size: int) -> tuple[PatchPlan, np.ndarray]:
    """A photo's patch plan and the photo resized to it (cached: train and test cut the same image)."""
    from PIL import Image

    img = _read_photo(name)
    plan = plan_patches(name, img.shape[0], img.shape[1], size=size)
    resized = np.asarray(Image.fromarray(img).resize((plan.width, plan.height), Image.Resampling.LANCZOS))
    resized.flags.writeable = False  # shared by every caller through the cache
    return plan, resized


def load_photos(split: str, *, size: int = 96) -> ImageSet:
    """Patches of the bundled photographs; label = photo index; train patches also come mirrored."""
    if split not in SPLITS["photos"]:
        raise InputError(f"dataset 'photos' has no split {split!r}; choose from train, test")
    patches, labels, ids = [], [], []
    for label, name in enumerate(PHOTOS):
        plan, resized = _resized_photo(name, size)
        corners = plan.test if split == "test" else plan.train
        k = 0
        for y, x in corners:
            patch = resized[y:y + size, x:x + size].transpose(2, 0, 1)  # (3, size, size)
            variants = [patch] if split == "test" else [patch, patch[:, :, ::-1]]  # mirror: free extra data
            for v in variants:
                patches.append(v)
                labels.append(label)
                ids.append(f"photos:{split}:{name}:{k:04d}")
                k += 1
    images = np.ascontiguousarray(np.stack(patches))
    return ImageSet("photos", split, images, np.array(labels), ids, PHOTOS)


# --------------------------------------------------------------------------------------------
# A folder of images

FOLDER_TEST_FRACTION = 0.2  # share of files held out, chosen by a hash of the file name


def _hash_fraction(name: str) -> float:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64


def split_files(names: Sequence[str], test_fraction: float = FOLDER_TEST_FRACTION) -> dict[str, list[str]]:
    """Deterministic train/test split by a hash of each name (independent of order or other files).

    With at least two files and none hashed into test, the one with the smallest hash is held out,
    so both splits are never empty.
    """
    test = sorted(n for n in names if _hash_fraction(n) < test_fraction)
    if not test and len(names) >= 2:
        test = [min(names, key=_hash_fraction)]
    held = set(test)
    return {"train": sorted(n for n in names if n not in held), "test": test}


def list_images(folder: str | Path) -> list[str]:
    """Image files under `folder` (recursively), as sorted POSIX paths relative to it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--data folder:{folder}: not a folder")
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if len(names) < 2:
        raise InputError(f"--data folder:{folder}: found {len(names)} image file(s) ({', '.join(IMAGE_EXTENSIONS)}); "
                         f"need at least 2 for a train and a test split")
    return names


def read_image(path: str | Path, size: int) -> np.ndarray:
    """Read any image as RGB, centre-crop the largest square and resize to size×size → uint8 (3, size, size)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable image ({exc.__class__.__name__}: {exc})") from None
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    im = im.crop((left, top, left + side, top + side))
    if side != size:
        im = im.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def load_folder(folder: str | Path, split: str, *, image_size: int = 96) -> ImageSet:
    """Images of a folder, centre-cropped and resized; split by file-name hash; no labels."""
    if split not in SPLITS["folder"]:
        raise InputError(f"dataset 'folder' has no split {split!r}; choose from train, test")
    names = split_files(list_images(folder))[split]
    images = np.stack([read_image(Path(folder) / n, image_size) for n in names])
    return ImageSet(f"folder:{folder}", split, images, np.full(len(names), -1), [f"folder:{split}:{n}" for n in names])


# --------------------------------------------------------------------------------------------
# Loading batches


def make_loader(dataset: ImageSet, batch_size: int, *, shuffle: bool, device: str | torch.device = "cpu",
                generator: torch.Generator | None = None, drop_last: bool = False,
                batches: Sequence[Sequence[int]] | None = None):
    """A DataLoader over `dataset`; pinned memory on CUDA so host→device copies can overlap.

    `batches` (lists of item indices, e.g. from `epoch_order` and `batch_bounds`) fixes the batches
    instead of `batch_size`/`shuffle`; the loader then gets a private generator for its seed draw,
    so neither `generator` nor the global RNG is touched.
    """
    import torch
    from torch.utils.data import DataLoader

    if batch_size < 1:
        raise InputError(f"--batch-size must be ≥ 1, got {batch_size}")
    pin = torch.device(device).type == "cuda"
    if batches is not None:
        return DataLoader(dataset, batch_sampler=batches, generator=torch.Generator(), pin_memory=pin, num_workers=0)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last,
                      pin_memory=pin, num_workers=0)


# --------------------------------------------------------------------------------------------
# Batches gathered on the device

# `device_data auto` puts the training set on a GPU when it takes at most this share of the free
# memory: STL-10 train+unlabeled (3.1 GB) on any 16 GB card, the rest is left for activations.
DEVICE_DATA_SHARE = 0.5
UPLOAD_CHUNK = 4096  # images copied to the device at a time: a memory-mapped file is never read whole into RAM


def epoch_order(n: int, generator: torch.Generator) -> torch.Tensor:
    """One epoch's order of n items: exactly what `DataLoader(shuffle=True, generator=generator)` draws.

    A DataLoader draws its workers' base seed from the generator, then its RandomSampler draws the
    permutation and, when asked for more after the last item, a second permutation of which it
    keeps none; drawing the same three keeps the device path, the DataLoader path and runs trained
    before this function existed on one order and one generator state (tests/test_ae_fast.py
    checks it against a DataLoader over several epochs).
    """
    import torch

    torch.empty((), dtype=torch.int64).random_(generator=generator)
    order = torch.randperm(n, generator=generator)
    torch.randperm(n, generator=generator)  # the sampler's empty tail: `randperm(n)[:num_samples % n]`
    return order


def batch_bounds(n: int, batch_size: int, rank: int = 0, world: int = 1) -> list[tuple[int, int, int, int]]:
    """(batch start, batch stop, this rank's start, this rank's stop) of every global batch in an epoch's order.

    The global batch is `batch_size` items (the last one smaller), whatever the number of processes;
    rank r of `world` takes the r-th of `world` near-equal contiguous slices of it (possibly empty).
    """
    out = []
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        m = stop - start
        out.append((start, stop, start + rank * m // world, start + (rank + 1) * m // world))
    return out


def is_memory_mapped(images: np.ndarray) -> bool:
    """Whether an array (or the array it views, or a StackedImages part) is a memory-mapped file rather than data in RAM."""
    import mmap

    if isinstance(images, StackedImages):
        return any(is_memory_mapped(p) for p in images.parts)
    a: object = images
    while a is not None:
        if isinstance(a, (np.memmap, mmap.mmap)):
            return True
        a = getattr(a, "base", None)
    return False


def device_data_fits(nbytes: int, device: torch.device) -> tuple[bool, str]:
    """Whether `nbytes` of images should live on `device` under `device_data auto`, and why (one phrase)."""
    import torch

    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        ok = nbytes <= DEVICE_DATA_SHARE * free
        return ok, f"{nbytes / 1e9:.2f} GB of images, {free / 1e9:.1f} GB free on {device}"
    if device.type == "cpu":
        return True, "in host memory"
    raise InputError(f"device {device} is not supported for training data; use cpu or cuda")


class DeviceImages:
    """A dataset's uint8 images (N, 3, H, W) held on one device; batches are gathered and converted there.

    On the CPU an in-memory C-contiguous array is used without a copy; anything else (a memory-mapped
    file, a strided view, a GPU) is copied UPLOAD_CHUNK images at a time.
    """

    def __init__(self, images: np.ndarray, device: torch.device) -> None:
        import torch

        self.device = device
        if device.type == "cpu" and isinstance(images, np.ndarray) and images.flags.c_contiguous \
                and images.flags.writeable and not is_memory_mapped(images):
            self.data = torch.from_numpy(images)
        else:
            self.data = torch.empty(images.shape, dtype=torch.uint8, device=device)
            for start in range(0, len(images), UPLOAD_CHUNK):
                chunk = torch.from_numpy(np.ascontiguousarray(images[start:start + UPLOAD_CHUNK]))
                self.data[start:start + len(chunk)].copy_(chunk)

    @property
    def nbytes(self) -> int:
        """Bytes held on the device."""
        return self.data.numel()

    def batch(self, index: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        """Images `index` (a device tensor) as float32 (B, 3, H, W) in [0, 1]: the same values as `to_float`."""
        import torch

        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return self.data.index_select(0, index).to(torch.float32, memory_format=fmt).div_(255.0)
