"""Published files fetched once into Keras' cache, checked against the publisher's hash.

`fetch(url, file_hash)` looks for the file, by its name, in this order:

1. the directory named by `KERAS_RESNETS_WEIGHTS_DIR` (files you put there yourself, e.g. on a
   machine without internet access; several directories may be separated by `os.pathsep`);
2. Keras' cache (`~/.keras/models/`, or `$KERAS_HOME/models/`), where keras.applications keeps
   the same files;
3. a download through `keras.utils.get_file` (with its progress bar) from the publisher's URL,
   or from the mirror named by `KERAS_RESNETS_WEIGHTS_MIRROR`, a base URL that replaces the
   publisher's scheme and host (`https://download.pytorch.org/models/x.pth` is fetched from
   `$KERAS_RESNETS_WEIGHTS_MIRROR/models/x.pth`).

Every file is checked against the publisher's hash. A cached file that does not match is
deleted and downloaded again; a download that does not match is deleted and reported; a file of
the local directory that does not match is reported (and left alone).
"""

import hashlib
import os
import urllib.parse

import keras

DIR_VARIABLE = "KERAS_RESNETS_WEIGHTS_DIR"
MIRROR_VARIABLE = "KERAS_RESNETS_WEIGHTS_MIRROR"
CACHE_SUBDIR = "models"
_ALGORITHMS = {"md5": 32, "sha256": 64}


class WeightsDownloadError(OSError):
    """A published file that could not be downloaded (no network, no mirror, an HTTP error)."""


class HashMismatchError(ValueError):
    """A file whose content does not match the publisher's hash."""


def parse_hash(file_hash: str):
    """`"md5:<hex>"` / `"sha256:<hex>"` -> (algorithm, lower-case hex); the hex may be a
    prefix of the digest (torchvision publishes 8 digits of the SHA-256)."""
    algorithm, _, digest = str(file_hash).partition(":")
    digest = digest.lower()
    if (algorithm not in _ALGORITHMS or not digest or len(digest) > _ALGORITHMS[algorithm]
            or any(c not in "0123456789abcdef" for c in digest)):
        raise ValueError(f"A file hash is 'md5:<hex>' or 'sha256:<hex>' (a prefix of the "
                         f"digest is allowed); got {file_hash!r}.")
    return algorithm, digest


def file_digest(path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def matches(path, file_hash: str) -> bool:
    """Whether the file at `path` has the publisher's hash (or digest prefix)."""
    algorithm, expected = parse_hash(file_hash)
    return file_digest(path, algorithm).startswith(expected)


def cache_dir() -> str:
    """Keras' cache directory (`~/.keras`, `$KERAS_HOME`, or `/tmp/.keras` when neither is
    writable), as `keras.utils.get_file` uses it."""
    try:
        from keras.src.backend.config import keras_home

        base = keras_home()
    except ImportError:  # pragma: no cover - a Keras without the private accessor
        base = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    base = os.path.expanduser(base)
    try:
        os.makedirs(os.path.join(base, CACHE_SUBDIR), exist_ok=True)
    except OSError:
        pass
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp", ".keras")
    return base


def local_dirs():
    value = os.environ.get(DIR_VARIABLE, "")
    return [d for d in value.split(os.pathsep) if d]


def source_url(url: str) -> str:
    """`url`, or its path on the mirror of `KERAS_RESNETS_WEIGHTS_MIRROR` when that is set."""
    mirror = os.environ.get(MIRROR_VARIABLE, "").strip()
    if not mirror:
        return url
    return mirror.rstrip("/") + "/" + urllib.parse.urlsplit(url).path.lstrip("/")


def fetch(url: str, file_hash: str, fname=None) -> str:
    """The local path of the published file at `url`, checked against `file_hash`.

    Raises:
        WeightsDownloadError: the file is nowhere local and could not be downloaded; the
            message says which file to put where.
        HashMismatchError: the file found or downloaded does not match the publisher's hash.
    """
    fname = fname or os.path.basename(urllib.parse.urlsplit(url).path)
    parse_hash(file_hash)
    for directory in local_dirs():
        path = os.path.join(os.path.expanduser(directory), fname)
        if os.path.isfile(path):
            if not matches(path, file_hash):
                raise HashMismatchError(
                    f"{path} (from {DIR_VARIABLE}) does not match the publisher's hash "
                    f"{file_hash}: it is not the file published at {url}. Replace it with that "
                    "file.")
            return path
    base = cache_dir()
    cached = os.path.join(base, CACHE_SUBDIR, fname)
    if os.path.isfile(cached):
        if matches(cached, file_hash):
            return cached
        os.remove(cached)
        print(f"{cached} did not match the publisher's hash {file_hash}; deleted it, "
              "downloading it again.")
    origin = source_url(url)
    try:
        path = keras.utils.get_file(fname, origin, cache_subdir=CACHE_SUBDIR, cache_dir=base)
    except Exception as error:  # get_file raises a bare Exception for URL failures
        raise WeightsDownloadError(_offline_message(fname, url, origin, error)) from None
    if not matches(path, file_hash):
        algorithm, _ = parse_hash(file_hash)
        actual = file_digest(path, algorithm)
        os.remove(path)
        raise HashMismatchError(
            f"The file downloaded from {origin} has {algorithm} {actual}, not the publisher's "
            f"{file_hash}: it was deleted ({path}). The download was corrupted or the "
            f"{'mirror' if origin != url else 'server'} serves another file; try again, or put "
            f"the file published at {url} in the directory named by {DIR_VARIABLE}.")
    return path


def _offline_message(fname, url, origin, error):
    reason = str(error).split(" -- ")[-1]  # get_file's message repeats the URL before " -- "
    directories = local_dirs()
    where = (f"one of the directories of {DIR_VARIABLE} ({os.pathsep.join(directories)})"
             if directories else
             f"a directory and set the environment variable {DIR_VARIABLE} to it")
    return (f"Cannot download {fname} from {origin} ({reason}). To work offline, download {url} "
            f"on a machine with internet access and put {fname} in {where} (or copy it to "
            f"{os.path.join(cache_dir(), CACHE_SUBDIR)}); behind a firewall, set "
            f"{MIRROR_VARIABLE} to a base URL that serves "
            f"{urllib.parse.urlsplit(url).path}.")
