"""Checkpoints as safetensors plus JSON: atomic writes, strict loads, no pickle.

A checkpoint named ``NAME`` in folder ``DIR`` is two files, ``DIR/NAME.safetensors``
(tensors) and ``DIR/NAME.json`` (config and metadata).  Both are written to a temporary
file in the same folder and moved into place with ``os.replace``, so a run killed
mid-write leaves the previous checkpoint intact.

Every module kind (generator, self-guidance, critic, tokenizer, classifier) saves and
loads through one path: it mixes in :class:`Checkpointable` and its config dataclass
mixes in :class:`ConfigDict`. ``export`` rewrites checkpoints through the same
``read_checkpoint``/``write_checkpoint`` pair.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import MaskgenError


FaultHook = Callable[[str, Path], None]
_fault_hook: FaultHook | None = None


def set_fault_hook(hook: FaultHook | None) -> None:
    """Install ``hook(operation, path)``, called before every file operation of a save.

    Fault-injection tests raise from it to stop a writer at each operation in turn, as a
    ``kill -9`` would (an exception not derived from ``Exception`` skips the clean-ups
    below, like a real kill)."""
    global _fault_hook
    _fault_hook = hook


def fault_point(operation: str, path: Path) -> None:
    if _fault_hook is not None:
        _fault_hook(operation, path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; a checkpoint gets the mode any other file written here gets
_FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Write ``path`` all at once: ``write(tmp)`` fills a temporary file in the same folder, which
    then replaces ``path`` (``os.replace``), so a reader or a run killed mid-write never sees half
    a file. Every file maskgen writes goes through here."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    try:
        fault_point("write", path)
        write(tmp)
        fault_point("replace", path)
        os.replace(tmp, path)
    except (Exception, KeyboardInterrupt):
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_json(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON, atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")

    atomic_write(Path(path), write)


def load_json(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``: every JSON file maskgen reads (a checkpoint's record, a
    cache's meta.json, a training state, a sidecar) holds one, so a file holding anything else
    (a list, ``null``, a number) is refused here in one line, not met later as a missing
    ``.get``."""
    path = Path(path)
    if not path.is_file():
        raise MaskgenError(f"missing file: {path}")
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MaskgenError(f"corrupt JSON file {path}: {e}") from None
    except RecursionError:
        raise MaskgenError(f"corrupt JSON file {path}: nested too deep") from None
    if not isinstance(data, dict):
        raise MaskgenError(f"{path} must hold a JSON object (names and values), got {'null' if data is None else type(data).__name__}")
    return data


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """Write tensors to a safetensors file, atomically (contiguous CPU copies)."""
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(Path(path), lambda tmp: save_file(flat, tmp, metadata=dict(metadata or {})))


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise MaskgenError(f"missing checkpoint file: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise MaskgenError(f"corrupt or truncated checkpoint {path}: {e}") from None


def save_arrays(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` to the ``.npz`` file ``path`` (no pickle), atomically; returns the path."""
    path = Path(path)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add .npz to a name
            np.savez(f, **arrays)

    atomic_write(path, write)
    return path


def load_arrays(path: str | Path, required: tuple[str, ...], optional: tuple[str, ...] = (), what: str = "arrays") -> dict[str, np.ndarray]:
    """The ``required`` (and present ``optional``) arrays of an ``.npz``, read without pickle.

    A missing, empty, truncated or non-zip file, a lone ``.npy``, a pickled (object) array
    or a missing key is a one-line error naming the file: numpy's own errors are a
    traceback through ``zipfile`` that does not say which input was wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise MaskgenError(f"{what} file does not exist: {path}")
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise MaskgenError(f"{path} is a single array, not an .npz of {what} ({', '.join(required)})")
        with f:
            missing = [k for k in required if k not in f.files]
            if missing:
                raise MaskgenError(f"{path} has no {', '.join(missing)} array: expected {what} ({', '.join(required)})")
            return {k: f[k] for k in (*required, *optional) if k in f.files}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "pickle" in reason:
            reason = "it holds pickled (object) data, which is never loaded"
        raise MaskgenError(f"cannot read {what} from {path} (expected an .npz of plain arrays): {reason}") from None


def check_state_dict(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise a one-line error listing missing, unexpected and mis-shaped keys."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(
        f"{k} {tuple(found[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(expected) & set(found)
        if tuple(found[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append("missing keys: " + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    if unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected[:8]) + (" ..." if len(unexpected) > 8 else ""))
    if shapes:
        problems.append("shape mismatch: " + ", ".join(shapes[:8]) + (" ..." if len(shapes) > 8 else ""))
    if problems:
        raise MaskgenError(f"checkpoint does not match {what}: " + "; ".join(problems))


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks: how checkpoints and the pieces trained on them are matched."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


C = TypeVar("C", bound="ConfigDict")


class ConfigDict:
    """``from_dict`` for config dataclasses: how every checkpoint's ``config`` is read back.

    Unknown keys are refused (a typo or a config from another kind must not be dropped
    silently); missing keys take the dataclass defaults, so checkpoints written before a
    field existed (e.g. ``time_schedule`` in ``GeneratorConfig``) still load.
    """

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any]) -> C:
        if not isinstance(d, Mapping):
            raise MaskgenError(f"invalid {cls.__name__}: expected a mapping, got {type(d).__name__}")
        names = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise MaskgenError(f"invalid {cls.__name__}: unknown keys {', '.join(unknown)}")
        required = sorted(n for n, f in names.items() if f.init and n not in d and f.default is MISSING and f.default_factory is MISSING)
        if required:
            raise MaskgenError(f"invalid {cls.__name__}: missing keys {', '.join(required)}")
        try:
            return cls(**d)
        except (TypeError, ValueError) as e:  # a value of the wrong type, e.g. a string width
            raise MaskgenError(f"invalid {cls.__name__}: {e}") from None


def write_checkpoint(folder: str | Path, name: str, tensors: Mapping[str, torch.Tensor], record: Mapping[str, Any]) -> Path:
    """Write ``folder/name.safetensors`` then ``folder/name.json`` (``record`` plus the tensors' sha256).

    The tensors go first and the JSON, which records their hash, goes last, so a reader
    that finds a JSON whose hash does not match knows the pair is inconsistent.
    """
    folder = Path(folder)
    weights = folder / f"{name}.safetensors"
    save_tensors(weights, tensors)
    save_json(folder / f"{name}.json", {**record, "sha256": file_sha256(weights)})
    return weights


def read_checkpoint(folder: str | Path, name: str, record: dict[str, Any] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """Read ``folder/name.{json,safetensors}``; return (tensors, record, sha256 of the weights).
    ``record``: the JSON, when the caller has read it already (it is not read again).

    A weights file whose hash differs from the recorded one is refused: same keys and
    shapes with other values (a half-finished copy, a stray overwrite) is otherwise silent.
    """
    folder = Path(folder)
    record = load_json(folder / f"{name}.json") if record is None else record
    check_record(record, folder / f"{name}.json")
    weights = folder / f"{name}.safetensors"
    tensors = load_tensors(weights)
    sha = file_sha256(weights)
    if record.get("sha256") not in (None, sha):
        raise MaskgenError(
            f"checkpoint {weights} is inconsistent: its sha256 does not match {name}.json"
            " (if a training run was killed while saving, --resume republishes its last complete checkpoint)"
        )
    return tensors, record, sha


# entries a checkpoint's JSON may hold besides its config, and what each must be
_TEXT_ENTRIES = ("kind", "sha256", "data", "data_fingerprint", "generator_sha256", "base_sha256", "teacher_sha256")


def check_record(record: dict[str, Any], path: Path) -> None:
    """The entries of a checkpoint's JSON every kind shares, checked by type in one place: a
    ``config`` mapping, text where text belongs, and ``class_names`` a list of one name per
    class of the config (``class_names: 5`` would otherwise label nothing, silently)."""
    if not isinstance(record.get("config"), dict):
        raise MaskgenError(f"checkpoint {path} has no config")
    for key in _TEXT_ENTRIES:
        if key in record and record[key] is not None and not isinstance(record[key], str):
            raise MaskgenError(f"checkpoint {path}: {key} must be a string, got {record[key]!r}")
    names = record.get("class_names")
    if names is not None:
        classes = record["config"].get("num_classes")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise MaskgenError(f"checkpoint {path}: class_names must be a list of names, got {names!r}")
        if isinstance(classes, int) and len(names) != classes:
            raise MaskgenError(f"checkpoint {path}: class_names holds {len(names)} names for num_classes {classes}")


M = TypeVar("M", bound="Checkpointable")


class Checkpointable:
    """maskgen's one save/load path, mixed into every module kind (an ``nn.Module``).

    A kind sets ``checkpoint_name`` (its default file name), ``checkpoint_kind`` (recorded
    as ``kind``) and ``config_class``; it keeps its config as ``self.config`` and gets
    ``sha256`` set on load. Every kind loads with the one signature
    ``load(folder, base=None, *, map_location=None, record=None)``; a kind that keeps more of
    its record, or is trained on another network (``base``: the generator a self-guidance
    module, a Token-Critic or a one-step student belongs to), overrides ``restore``.
    """

    checkpoint_name: ClassVar[str]
    checkpoint_kind: ClassVar[str]
    config_class: ClassVar[type[ConfigDict]]
    config: Any  # a dataclass instance of ``config_class``
    sha256: str | None  # hash of the weights file it was loaded from

    def checkpoint_record(self) -> dict[str, Any]:
        """Metadata this kind must always record besides its config (none by default)."""
        return {}

    def save(self, folder: str | Path, name: str | None = None, **extra: Any) -> Path:
        """Write ``folder/NAME.{safetensors,json}``; ``extra`` (data, objective, ...) goes into the JSON."""
        record = {**extra, **self.checkpoint_record(), "config": asdict(self.config), "kind": self.checkpoint_kind}
        return write_checkpoint(folder, name or self.checkpoint_name, self.state_dict(), record)

    @classmethod
    def load(cls: type[M], folder: str | Path, base: Any = None, *, map_location: str | torch.device | None = None,
             record: dict[str, Any] | None = None) -> M:
        """Load ``folder/NAME.{safetensors,json}`` in eval mode with ``sha256`` set, checked against
        ``base`` (the network it was trained on, for the kinds that have one), onto ``map_location``
        (default: ``base``'s device, else the CPU). ``record``: the JSON, when the caller has read it."""
        module, record = cls.read(folder, record=record)
        module.restore(record, base, f" in {folder}")
        if map_location is None:
            map_location = next(base.parameters()).device if base is not None else "cpu"
        return module.to(map_location).eval()

    def restore(self, record: dict[str, Any], base: Any, where: str) -> None:
        """Take what this kind keeps from its ``record`` besides config and weights, and check it
        against ``base``; a kind trained on no other network refuses one."""
        if base is not None:
            raise MaskgenError(f"a {self.checkpoint_kind} checkpoint{where} is not trained on another network; load it without one")

    @classmethod
    def read(cls: type[M], folder: str | Path, name: str | None = None, record: dict[str, Any] | None = None) -> tuple[M, dict[str, Any]]:
        """Build from the recorded config, load the tensors strictly (floating ones cast to the
        module's dtype, so bf16 exports load back into float32); return it in eval mode with
        ``sha256`` set, and the JSON record (``record``: already read by the caller)."""
        name = name or cls.checkpoint_name
        tensors, record, sha = read_checkpoint(folder, name, record)
        where = f"{Path(folder)}/{name}"
        kind = record.get("kind")
        if kind is not None and kind != cls.checkpoint_kind:
            raise MaskgenError(f"checkpoint {where} holds a {kind}, not a {cls.checkpoint_kind}")
        try:
            config = cls.config_class.from_dict(record["config"])
        except MaskgenError as e:
            raise MaskgenError(f"checkpoint {where}.json: {e}") from None
        module = cls(config)  # type: ignore[call-arg]
        expected = module.state_dict()
        check_state_dict(expected, tensors, f"{cls.__name__} in {where}")
        state = {k: v.to(expected[k].dtype) if v.is_floating_point() else v for k, v in tensors.items()}
        module.load_state_dict(state, strict=True)
        module.sha256 = sha
        return module.eval(), record
