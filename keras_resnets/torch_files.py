"""PyTorch weight files read into NumPy without PyTorch: `.pth` (zip or legacy) and `.safetensors`.

`read_pth` reads what `torch.save(state_dict, path)` writes, in both of its formats (the zip
archive of PyTorch 1.6+ and the older single-stream "legacy" format), with a restricted
unpickler: only an `OrderedDict`, PyTorch's tensor rebuild functions and its storage types may
appear in the pickle; any other global (which could run code) is refused. `read_safetensors`
reads the safetensors format (a JSON header, then raw little-endian tensors) and
`save_safetensors` writes it. Both readers return a dict of parameter name -> `np.ndarray`.

>>> import numpy as np, os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
>>> save_safetensors(path, {"fc.bias": np.arange(3, dtype="float32")})
>>> read_safetensors(path)["fc.bias"]
array([0., 1., 2.], dtype=float32)
"""

import collections
import io
import json
import pickle
import struct
import zipfile
from typing import Dict, Mapping, Optional

import numpy as np

# PyTorch storage classes -> NumPy dtypes ("BFloat16" has no NumPy dtype: read as uint16 bits).
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": "bfloat16",
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_REBUILD_FUNCTIONS = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter",
                      "_rebuild_parameter_with_state")


class UnsupportedFileError(ValueError):
    """A weight file this module cannot read (or refuses to)."""


def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _numpy_dtype(dtype):
    return np.dtype(np.uint16) if isinstance(dtype, str) else np.dtype(dtype)


class _Storage:
    """A storage's dtype and (once read) its flat data."""

    def __init__(self, dtype, numel):
        self.dtype = dtype
        self.numel = numel
        self.data: Optional[np.ndarray] = None


class _Tensor:
    """A tensor whose storage may be read after unpickling (the legacy format)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), stride

    def to_numpy(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise UnsupportedFileError("A tensor's storage is missing from the file.")
        count = int(np.prod(self.size)) if self.size else 1
        if count == 0:
            array = np.zeros(self.size, data.dtype)
        else:
            last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
            if self.offset < 0 or last >= data.size:
                raise UnsupportedFileError("A tensor reaches past the end of its storage.")
            itemsize = data.dtype.itemsize
            array = np.lib.stride_tricks.as_strided(
                data[self.offset:], shape=self.size,
                strides=[s * itemsize for s in self.stride]).copy()
        if isinstance(self.storage.dtype, str):  # bfloat16 bits
            array = _bfloat16_to_float32(array)
        return array


def _rebuild_tensor(storage, storage_offset, size, stride, *_):
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_):
    return data


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a state dict; refuses every global but the few a state dict needs."""

    def __init__(self, file, load_storage):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in _REBUILD_FUNCTIONS:
            return _rebuild_parameter if "parameter" in name else _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsupportedFileError(
            f"refused to unpickle the global '{module}.{name}': only state dicts of tensors "
            "(an OrderedDict, torch._utils rebuild functions and torch storage types) are read. "
            "Save the weights with torch.save(model.state_dict(), path).")

    def persistent_load(self, saved_id):
        if not (isinstance(saved_id, tuple) and saved_id and saved_id[0] == "storage"):
            raise UnsupportedFileError(f"unsupported persistent id {saved_id!r} in the pickle.")
        return self._load_storage(*saved_id[1:])


def _is_legacy_pth(head: bytes) -> bool:
    try:
        return pickle.Unpickler(io.BytesIO(head)).load() == _LEGACY_MAGIC
    except Exception:  # not a pickle, or one that needs more than the head
        return False


def read_pth(path) -> Dict[str, np.ndarray]:
    """Read a `.pth` / `.pt` file written by `torch.save(state_dict, path)` into NumPy arrays.

    Both formats of `torch.save` are read: the zip archive (PyTorch 1.6 and later, the
    default) and the legacy format (`_use_new_zipfile_serialization=False`, and files
    published before 2020). A checkpoint dict whose `"state_dict"` or `"model"` entry holds the
    tensors is unwrapped. bfloat16 tensors are returned as float32.

    Raises:
        UnsupportedFileError: the file is neither format, or its pickle holds anything but
            tensors in (ordered) dicts.
    """
    with open(path, "rb") as handle:
        head = handle.read(64)
    if zipfile.is_zipfile(path):
        result = _read_zip_pth(path)
    elif _is_legacy_pth(head):
        result = _read_legacy_pth(path)
    else:
        raise UnsupportedFileError(
            f"{path} is not a file written by torch.save (neither its zip archive nor its "
            "legacy format).")
    return _state_dict(result, path)


def _read_zip_pth(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [name for name in names if name.endswith("data.pkl")]
        if len(pickles) != 1:
            raise UnsupportedFileError(f"{path} is a zip archive without one data.pkl: it is "
                                       "not a file written by torch.save.")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode().strip()
        storages = {}

        def load_storage(storage_type, key, location, numel, *_):
            if not isinstance(storage_type, _StorageType):
                raise UnsupportedFileError(f"unsupported storage type {storage_type!r}.")
            if key not in storages:
                storage = _Storage(storage_type.dtype, numel)
                raw = archive.read(f"{prefix}data/{key}")
                dtype = _numpy_dtype(storage_type.dtype).newbyteorder(
                    "<" if byteorder == "little" else ">")
                storage.data = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
                storages[key] = storage
            return storages[key]

        with archive.open(pickles[0]) as stream:
            return _RestrictedUnpickler(io.BytesIO(stream.read()), load_storage).load()


def _read_legacy_pth(path):
    storages = {}

    def load_storage(storage_type, key, location, numel, view_metadata=None):
        if not isinstance(storage_type, _StorageType):
            raise UnsupportedFileError(f"unsupported storage type {storage_type!r}.")
        if view_metadata is not None:
            raise UnsupportedFileError("storage views (a legacy-format feature of tensors "
                                       "sharing memory) are not supported; resave the file.")
        return storages.setdefault(key, _Storage(storage_type.dtype, numel))

    with open(path, "rb") as handle:
        for expected in (_LEGACY_MAGIC, None, None):  # magic number, protocol, system info
            value = _RestrictedUnpickler(handle, load_storage).load()
            if expected is not None and value != expected:
                raise UnsupportedFileError(f"{path}: bad magic number.")
        result = _RestrictedUnpickler(handle, load_storage).load()
        keys = _RestrictedUnpickler(handle, load_storage).load()
        for key in keys:
            storage = storages[key]
            dtype = _numpy_dtype(storage.dtype)
            (count,) = struct.unpack("<q", handle.read(8))
            raw = handle.read(count * dtype.itemsize)
            if len(raw) != count * dtype.itemsize:
                raise UnsupportedFileError(f"{path} is truncated.")
            storage.data = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)
    return result


def _state_dict(result, path) -> Dict[str, np.ndarray]:
    if isinstance(result, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(result.get(key), Mapping) and not any(
                    isinstance(v, _Tensor) for v in result.values()):
                result = result[key]
                break
    if not isinstance(result, Mapping) or not all(
            isinstance(v, _Tensor) for v in result.values()):
        raise UnsupportedFileError(
            f"{path} does not hold a state dict (a mapping of names to tensors).")
    return {str(key): value.to_numpy() for key, value in result.items()}


def read_safetensors(path) -> Dict[str, np.ndarray]:
    """Read a `.safetensors` file into a dict of name -> `np.ndarray` (bfloat16 as float32).

    Raises:
        UnsupportedFileError: the file is not in the safetensors format.
    """
    with open(path, "rb") as handle:
        blob = handle.read()
    if len(blob) < 8:
        raise UnsupportedFileError(f"{path} is too short for a safetensors file.")
    (header_size,) = struct.unpack("<Q", blob[:8])
    try:
        header = json.loads(blob[8:8 + header_size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise UnsupportedFileError(f"{path} is not a safetensors file (no JSON header).") from None
    data = memoryview(blob)[8 + header_size:]
    arrays = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise UnsupportedFileError(f"{path}: tensor '{name}' has unsupported dtype "
                                       f"{info.get('dtype')!r}.")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        array = np.frombuffer(data[begin:end], dtype=_numpy_dtype(dtype).newbyteorder("<"))
        if array.size != int(np.prod(shape)):
            raise UnsupportedFileError(f"{path}: tensor '{name}' has {array.size} values for "
                                       f"shape {shape}.")
        array = array.reshape(shape).astype(_numpy_dtype(dtype))
        arrays[name] = _bfloat16_to_float32(array) if isinstance(dtype, str) else array
    return arrays


def save_safetensors(path, arrays: Mapping[str, np.ndarray],
                     metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write NumPy arrays (or anything `np.asarray` takes) as a `.safetensors` file."""
    names = {np.dtype(v): k for k, v in _SAFETENSORS_DTYPES.items() if not isinstance(v, str)}
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, value in arrays.items():
        array = np.ascontiguousarray(np.asarray(value))
        if array.dtype not in names:
            raise ValueError(f"'{name}' has dtype {array.dtype}, which safetensors lacks.")
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": names[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the format aligns the data to 8 bytes
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for chunk in chunks:
            handle.write(chunk)
