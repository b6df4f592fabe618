"""Class labels as int64 class ids, by exact equality: shared by the samplers and the evaluation.

Integer labels are kept as they are (so sampler fingerprints and outputs for integer labels never
change); any other labels (floats, strings, Python objects) become contiguous ids 0..C-1 in sorted
label order, equal exactly where the labels are equal. Casting with ``astype(int64)`` instead would
merge 0.1 and 0.2, merge "7" and "07", and fail on "a".

>>> class_ids(np.array([7, 3, 7]))[0].tolist()
[7, 3, 7]
>>> [ids.tolist() for ids in class_ids(np.array([0.1, 0.2]), np.array([0.2, 0.1, 0.3]))]
[[0, 1], [1, 0, 2]]
>>> class_ids(np.array(["7", "07", "a"]))[0].tolist()
[1, 0, 2]
"""

from __future__ import annotations

import numpy as np

_NUMERIC_KINDS = "biuf"
_TEXT_KINDS = "US"


def class_ids(*label_arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """One int64 id array per input, ids shared across the inputs (query and gallery labels together).

    Raises ValueError with the reason for labels that cannot be compared exactly: not 1-D, NaN,
    complex, or numbers in one array and text in another.
    """
    arrays = [np.asarray(a) for a in label_arrays]
    for arr in arrays:
        if arr.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {arr.shape}")
        if arr.dtype.kind not in _NUMERIC_KINDS + _TEXT_KINDS + "O":
            raise ValueError(f"labels must be integers, floats or strings, got dtype {arr.dtype}")
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise ValueError("labels contain NaN, which equals no label; give every image a class")
    kinds = {"number" if a.dtype.kind in _NUMERIC_KINDS else "text" for a in arrays if a.dtype.kind != "O"}
    if len(kinds) > 1:
        raise ValueError("labels mix numbers and strings across arrays; give them all one type")
    if all(a.dtype.kind in "biu" and np.can_cast(a.dtype, np.int64) for a in arrays):
        return tuple(a.astype(np.int64) for a in arrays)
    try:
        _, codes = np.unique(np.concatenate(arrays), return_inverse=True)
    except TypeError as err:  # object arrays whose items do not sort together (e.g. 1 and "a")
        raise ValueError(f"labels cannot be compared with each other ({err}); give them all one type") from None
    codes = codes.astype(np.int64).ravel()
    bounds = np.cumsum([len(a) for a in arrays])[:-1]
    return tuple(np.split(codes, bounds))
