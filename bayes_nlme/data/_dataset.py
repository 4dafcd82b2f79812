"""The validated, padded, pandas-free dataset handed to the JAX core.

Everything downstream of :mod:`bayes_nlme.data` sees only :class:`Dataset`: plain NumPy
arrays, one row per subject, padded to the largest subject and masked. Nothing here imports
pandas.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Dataset", "Doses"]


class Doses(NamedTuple):
    """Dose events of ONE subject (the unit the structural models see).

    A NamedTuple, hence a JAX pytree: ``jax.vmap`` maps it over subjects.

    Attributes
    ----------
    time : array, shape (n_dose,)
        Dose time (same unit as TIME, usually h), before any lag time (ALAG).
    amt : array, shape (n_dose,)
        Dose amount (AMT), before bioavailability (F).
    rate : array, shape (n_dose,)
        Zero-order infusion rate (RATE, amount/time); 0 for a bolus or an oral dose.
    cmt : array of int, shape (n_dose,)
        NONMEM compartment number (CMT, 1-based) the dose enters; 0 means "the model's
        default dose compartment" (used when the dataset has no CMT column).
    mask : array of bool, shape (n_dose,)
        True for real events, False for padding.
    ss : array of int, shape (n_dose,), or None
        NONMEM steady-state flag (SS) of each dose: 0 an ordinary (transient) dose; 1 a
        steady-state dose that first RESETS the system (every dose that comes before it
        stops contributing from its record time on), then sets the amounts to the steady
        state of "AMT every II"; 2 a steady-state dose whose steady state is ADDED to what
        the earlier doses give. "Before" means an earlier time, or the same time and a
        smaller index (record order). ``None`` (the default): no steady-state information,
        every dose is ordinary.
    ii : array of float, shape (n_dose,), or None
        Dosing interval (II) of the implied doses of a steady-state dose; must be > 0 where
        ``ss`` > 0, ignored elsewhere. ``None`` (the default) goes with ``ss=None``.

    Notes
    -----
    ``ss`` and ``ii`` are the last two fields and default to ``None``, so the five-argument
    form ``Doses(time, amt, rate, cmt, mask)`` keeps working (and keeps the structural
    models on their faster path without steady-state terms). When iterating over the
    fields (``zip(*doses)``, ``np.stack``) take ``doses[:5]`` or handle the ``None``
    fields; ``jax.vmap``/``jax.jit`` treat ``None`` as an empty subtree.
    """

    time: Any
    amt: Any
    rate: Any
    cmt: Any
    mask: Any
    ss: Any = None
    ii: Any = None


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A validated NONMEM-style dataset as padded per-subject arrays.

    Built by :func:`bayes_nlme.read_nonmem`; do not construct by hand. ``n_id`` subjects,
    each padded to ``n_dose_max`` dose events (ADDL/II already expanded into separate events)
    and ``n_obs_max`` observations. Padding is masked out (``*_mask`` False) and holds
    harmless values (time 0, amount 0, DV 0) so no NaN can leak into gradients.

    Attributes
    ----------
    ids : ndarray, shape (n_id,)
        The dataset's own subject IDs, in order of first appearance.
    dose_time, dose_amt, dose_rate : ndarray of float64, shape (n_id, n_dose_max)
        Dose events per subject (see :class:`Doses`), sorted by time within a subject.
    dose_cmt : ndarray of int32, shape (n_id, n_dose_max)
        NONMEM CMT (1-based) of each dose; 0 = the model's default dose compartment.
    dose_mask : ndarray of bool, shape (n_id, n_dose_max)
    dose_ss : ndarray of int32, shape (n_id, n_dose_max)
        NONMEM SS flag of each dose event: 0, 1 or 2 (see :class:`Doses`). The additional
        doses of an ADDL record are ordinary doses (0) even when the record is SS 1 or 2.
        Padding 0. Zeros when not given (e.g. a Dataset built by hand).
    dose_ii : ndarray of float64, shape (n_id, n_dose_max)
        II of the dose record (the interval of a steady-state dose's implied doses); 0 on
        the additional doses expanded from ADDL and on padding.
    obs_time, obs_dv : ndarray of float64, shape (n_id, n_obs_max)
        Observation times and DV values (EVID 0, MDV 0 rows), in record order.
    obs_cmt : ndarray of int32, shape (n_id, n_obs_max)
        CMT of each observation (0 when the dataset has no CMT column).
    obs_mask : ndarray of bool, shape (n_id, n_obs_max)
    obs_row : ndarray of int64, shape (n_id, n_obs_max)
        Row label of each observation in the input table (-1 for padding), so results can
        be joined back to the user's data.
    covariates : dict of str to ndarray of float64, shape (n_id,)
        Baseline (first-record) value of each covariate column, under the column's name as
        written in the input. Non-numeric columns are integer codes into
        ``covariate_levels[name]``. Missing values are NaN.
    covariate_levels : dict of str to tuple
        Level labels of the non-numeric covariates (code ``k`` means ``levels[k]``).
    notes : tuple of str
        Documented recodings applied while reading (e.g. EVID=101 mapped to EVID=1).
    obs_dvid : ndarray of int32, shape (n_id, n_obs_max)
        Code of each observation's DVID (observation type): ``dvid_levels[code]``. Zeros
        when the dataset has no DVID column.
    dvid_levels : tuple of str
        DVID labels (numbers written as ``"1"``, ``"2"``, ...); empty without DVID.
    obs_cens : ndarray of bool, shape (n_id, n_obs_max)
        True for observations below the lower limit of quantification (CENS=1).
    obs_lloq : ndarray of float64, shape (n_id, n_obs_max)
        Lower limit of quantification of each observation, NaN where unknown.
    dose_seg, obs_seg : ndarray of int32, shapes (n_id, n_dose_max), (n_id, n_obs_max)
        Segment of each dose and observation: 0 until the subject's first reset record
        (EVID 3 or 4), then 1, ... Doses of one segment do not reach another segment.
    segment_covariates : dict of str to ndarray of float64, shape (n_id, n_seg_max)
        Value of each covariate at the first record of each segment (NaN where a subject
        has fewer segments). Equal to ``covariates`` for single-segment subjects.
    segment_varying : tuple of str
        Covariates whose value changes within a segment: the time-varying covariates (see
        ``record_covariates``).
    dose_row : ndarray of int64, shape (n_id, n_dose_max)
        Row label (as ``obs_row``) of the record of each dose event (the ADDL record for its
        additional doses); -1 for padding and when unknown.
    record_time, record_seg, record_row, record_mask : ndarrays, shape (n_id, n_rec_max)
        Every record of each subject (all EVIDs, EVID=2 included), in record order: TIME,
        segment, row label (as ``obs_row``) and the padding mask (float64, int32, int64,
        bool). When not given (a Dataset built by hand) the observation records stand in.
    record_covariates : dict of str to ndarray of float64, shape (n_id, n_rec_max)
        Value on every record (``record_*`` slots) of each covariate of
        ``segment_varying``; NaN where missing and on padding. A covariate that is not a
        key is constant within each segment (``segment_covariates``). A model that
        declares one of these covariates uses it as time-varying: piecewise constant, each
        record's value applying from its TIME on (last observation carried forward; see
        :func:`bayes_nlme.read_nonmem` and :class:`bayes_nlme.Model`).
    source : str or None
        The CSV file the dataset was read from (None for a DataFrame): messages then also
        give CSV line numbers (row label + 2).
    """

    ids: np.ndarray
    dose_time: np.ndarray
    dose_amt: np.ndarray
    dose_rate: np.ndarray
    dose_cmt: np.ndarray
    dose_mask: np.ndarray
    obs_time: np.ndarray
    obs_dv: np.ndarray
    obs_cmt: np.ndarray
    obs_mask: np.ndarray
    obs_row: np.ndarray
    covariates: dict = dataclasses.field(default_factory=dict)
    covariate_levels: dict = dataclasses.field(default_factory=dict)
    notes: tuple = ()
    dose_ss: np.ndarray | None = None
    dose_ii: np.ndarray | None = None
    obs_dvid: np.ndarray | None = None
    dvid_levels: tuple = ()
    obs_cens: np.ndarray | None = None
    obs_lloq: np.ndarray | None = None
    dose_seg: np.ndarray | None = None
    obs_seg: np.ndarray | None = None
    segment_covariates: dict | None = None
    segment_varying: tuple = ()
    dose_row: np.ndarray | None = None
    record_time: np.ndarray | None = None
    record_seg: np.ndarray | None = None
    record_row: np.ndarray | None = None
    record_mask: np.ndarray | None = None
    record_covariates: dict = dataclasses.field(default_factory=dict)
    source: str | None = None

    def __post_init__(self) -> None:
        shape = np.shape(self.dose_time)
        oshape = np.shape(self.obs_time)
        defaults = {
            "dose_ss": np.zeros(shape, np.int32),
            "dose_ii": np.zeros(shape, np.float64),
            "obs_dvid": np.zeros(oshape, np.int32),
            "obs_cens": np.zeros(oshape, bool),
            "obs_lloq": np.full(oshape, np.nan),
            "dose_seg": np.zeros(shape, np.int32),
            "obs_seg": np.zeros(oshape, np.int32),
            "segment_covariates": {
                k: np.asarray(v, np.float64)[:, None] for k, v in self.covariates.items()
            },
            "dose_row": np.full(shape, -1, np.int64),
        }
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.record_time is None:  # built by hand: the observation records stand in
            records = {
                "record_time": np.asarray(self.obs_time, np.float64),
                "record_seg": np.asarray(self.obs_seg, np.int32),
                "record_row": np.asarray(self.obs_row, np.int64),
                "record_mask": np.asarray(self.obs_mask, bool),
            }
            for name, value in records.items():
                object.__setattr__(self, name, value)

    @property
    def n_id(self) -> int:
        """Number of subjects."""
        return int(self.ids.shape[0])

    @property
    def n_obs(self) -> int:
        """Total number of observations (the length of the ``obs`` dimension)."""
        return int(self.obs_mask.sum())

    @property
    def obs_index(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the real observations in the padded arrays.

        Returns
        -------
        (subject, slot) : tuple of ndarray of int, each shape (n_obs,)
            ``obs_dv[subject, slot]`` is the flat DV vector, ordered by subject then record.
        """
        return np.nonzero(self.obs_mask)

    @property
    def dv(self) -> np.ndarray:
        """Observed DV as a flat vector, shape (n_obs,)."""
        s, j = self.obs_index
        return self.obs_dv[s, j]

    @property
    def obs_id(self) -> np.ndarray:
        """Subject ID of each observation, shape (n_obs,)."""
        return self.ids[self.obs_index[0]]

    @property
    def n_segments(self) -> np.ndarray:
        """Number of segments (1 + resets that start one) of each subject, shape (n_id,)."""
        d = np.where(self.dose_mask, self.dose_seg, -1).max(axis=1, initial=-1)
        o = np.where(self.obs_mask, self.obs_seg, -1).max(axis=1, initial=-1)
        return np.maximum(np.maximum(d, o), 0) + 1

    @property
    def has_resets(self) -> bool:
        """Whether any subject has more than one segment (reset records, EVID 3/4)."""
        return bool(np.any(self.n_segments > 1))

    def doses(self, i: int) -> Doses:
        """Dose events of subject number ``i`` (0-based position, not ID)."""
        return Doses(
            self.dose_time[i],
            self.dose_amt[i],
            self.dose_rate[i],
            self.dose_cmt[i],
            self.dose_mask[i],
            self.dose_ss[i],
            self.dose_ii[i],
        )

    def __repr__(self) -> str:
        covs = ", ".join(self.covariates) or "none"
        return (
            f"Dataset({self.n_id} subjects, {self.n_obs} observations, "
            f"{int(self.dose_mask.sum())} dose events; covariates: {covs})"
        )
