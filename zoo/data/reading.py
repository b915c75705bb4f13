"""Reading data files: one path per kind of file, every failure a :class:`DataError`.

A :class:`DataFile` is a file to read together with how messages name it and what a user can
do when it is damaged (delete a cache copy so that it is downloaded again, reinstall the
package for a shipped file, reinstall a system package). Its readers turn every way a read
can fail into one paragraph that says which file, what is wrong and that remedy:

- a read error of the file itself (missing, a folder, no permission, an I/O error), told
  apart from a damaged gzip stream (not gzip, truncated, corrupt deflate data, bad CRC);
- text that is not UTF-8 (a binary file where a CSV should be), a CSV the csv module refuses;
- numbers that do not parse, or that parse to NaN or an infinity (``float`` accepts ``inf``,
  ``nan`` and ``1e999``: a row would pass and the run fail much later).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.errors import DataError

if TYPE_CHECKING:  # importlib.resources.abc is Python >= 3.11
    from importlib.resources.abc import Traversable

# what to do about a damaged file shipped in the package
SHIPPED_REMEDY = (
    "The copy shipped with the package is damaged: reinstall the package "
    "(pip install --force-reinstall pyro-zoo, or pip install -e . in a checkout)."
)


@dataclass(frozen=True)
class DataFile:
    """A data file and what to say when it cannot be used.

    :param location: the file (a path, or a resource shipped in the package).
    :param name: how messages name it (its path, or where it was shipped).
    :param remedy: one or two sentences on what the user can do if it is damaged.

    Example::

        >>> f = DataFile(Path("x.csv.gz"), "x.csv.gz", "Replace it with a good copy.")
        >>> f.error("not a number", where="row 3").args[0]
        'x.csv.gz, row 3: not a number. Replace it with a good copy.'
        >>> f.error("is truncated").args[0]
        'x.csv.gz is truncated. Replace it with a good copy.'
    """

    location: Path | Traversable
    name: str
    remedy: str

    @classmethod
    def at(cls, path: str | os.PathLike[str], remedy: str) -> DataFile:
        """The file at ``path`` (``~`` expanded), named by its path."""
        path = Path(path).expanduser()
        return cls(path, str(path), remedy)

    def error(self, problem: str, where: str | None = None) -> DataError:
        """The error for ``problem`` in this file: its name, the problem, the remedy.

        :param problem: what is wrong; without ``where``, a phrase that follows the file's
            name (``"is truncated"``, ``"has 3 rows, expected 272"``).
        :param where: the place in the file, e.g. ``"row 5"``.
        """
        place = f"{self.name}, {where}:" if where else self.name
        return DataError(" ".join(filter(None, [f"{place} {problem.rstrip('.')}.", self.remedy])))

    def read_bytes(self) -> bytes:
        """The file's bytes, decompressed if its name ends in ``.gz``.

        :raises DataError: if the file cannot be read, or its gzip stream is damaged.
        """
        try:
            raw = self.location.read_bytes()
        except FileNotFoundError as e:
            raise self.error("does not exist") from e
        except IsADirectoryError as e:
            raise self.error("is a folder, not a file") from e
        except OSError as e:  # no permission, an I/O error of the disk
            raise self.error(f"cannot be read: {e.strerror or e}") from e
        if not self.location.name.endswith(".gz"):
            return raw
        try:
            return gzip.decompress(raw)
        except EOFError as e:
            raise self.error("is truncated: its gzip stream ends early") from e
        except gzip.BadGzipFile as e:  # no gzip header, or a CRC or length that do not match
            raise self.error(f"is not a valid gzip file ({e})") from e
        except zlib.error as e:  # a changed byte inside the deflate stream
            raise self.error(f"is corrupted: its compressed data do not decompress ({e})") from e

    def read_text(self) -> str:
        """The file's text (UTF-8), decompressed if its name ends in ``.gz``.

        :raises DataError: as :meth:`read_bytes`, or if the bytes are not UTF-8 text.
        """
        data = self.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.error(
                f"is not UTF-8 text (byte 0x{data[e.start]:02X} at offset {e.start}): it is "
                "a binary file, or another file under this name"
            ) from e
        if "\0" in text:
            raise self.error("holds NUL bytes: it is a binary file, not text")
        return text

    def csv_rows(self, first_number: int = 1) -> Iterator[tuple[int, list[str]]]:
        """The rows of the file as CSV text, each with its number (from ``first_number``).

        :raises DataError: as :meth:`read_text`, or for a row the csv module refuses.
        """
        reader = csv.reader(io.StringIO(self.read_text(), newline=""))
        number = first_number
        try:
            for row in reader:
                yield number, row
                number += 1
        except csv.Error as e:
            raise self.error(f"is not valid CSV ({e})", where=f"row {number}") from e

    def finite_numbers(self, row: list[str], where: str) -> list[float]:
        """The values of ``row`` as finite floats.

        :param where: the place for messages, e.g. ``"row 5"``.
        :raises DataError: naming the file and ``where``, for a value that is not a number or
            is NaN or infinite.
        """
        try:
            numbers = [float(v) for v in row]
        except ValueError as e:
            raise self.error(f"not a number ({e})", where) from e
        bad = [v for v, x in zip(row, numbers) if not math.isfinite(x)]
        if bad:
            raise self.error(
                f"{bad[0].strip()!r} is not a finite number (NaN and infinity are not allowed)",
                where,
            )
        return numbers

