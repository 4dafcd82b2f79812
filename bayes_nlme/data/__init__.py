"""Reading NONMEM-style datasets: validation and conversion to padded arrays.

:func:`read_nonmem` is the only entry point: it takes a CSV path or a pandas DataFrame,
checks it against a declarative list of rules (reporting every violation at once in a
:class:`DatasetError`) and returns a :class:`Dataset` of NumPy arrays, one row per subject.
Nothing downstream of this package uses pandas.
"""

from ._dataset import Dataset, Doses
from ._read import read_nonmem
from ._rules import DatasetError, Violation

__all__ = ["Dataset", "DatasetError", "Doses", "Violation", "read_nonmem"]
