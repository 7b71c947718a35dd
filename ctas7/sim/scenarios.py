"""The 41 seeded scenario generators and their ground truth.

A :class:`Scenario` is a fixed *topology* (nodes, groups, per-node background
rates, event-time tick length, seasonality, noise) plus seeded recipes for
incidents and decoys. ``scenario.generate(seed)`` returns one
:class:`ScenarioRun`: the per-tick activity matrix the meter consumes, the
time-sorted event stream it was binned from, and the ground truth
(:class:`Truth`: incidents with onset, deadline, nodes, lead time and effect
shape; decoys). ``scenario.generate(seed, null=True)`` is the same run without
its incidents: identical background, seasonality, noise and decoys (the
random streams are split per component), so an incident run and the null run
of the same seed differ only in the incident cells and the indicator events.

Conventions
-----------
* Ticks are event-time buckets of ``scenario.tick_ns`` ns starting at
  ``ts = 0``; tick length is chosen per scenario to fit its time scale
  (1 minute for attacks that unfold in minutes, 1 hour for outbreaks and
  campaigns, 4-12 hours for epidemics). Runs are 200-600 ticks and 8-40
  nodes, at most 15,000 node-ticks.
* :data:`QUORUM` = 3 is the assumed convergence quorum (``min_hot_nodes``):
  every incident involves at least 3 nodes; a *near miss* decoy involves
  1 or 2 nodes (at most ``QUORUM - 1``), with the incident's own shape and,
  when it has indicators, the indicator sequence minus its last step.
  A *spike* decoy is one node bursting for 1-3 ticks.
* Effect shapes (:data:`SHAPES`), applied to an involved node from its own
  start tick (onset + stagger): ``step`` multiplies the rate by
  ``1 + magnitude`` for ``duration`` ticks; ``ramp`` rises linearly to that
  over ``ramp`` ticks; ``burst`` jumps to ``1 + magnitude`` and decays
  exponentially with time constant ``duration`` (applied for 4 constants);
  ``variance`` keeps the mean and multiplies each tick's rate by a gamma
  variate of coefficient of variation ``magnitude``; ``drop`` removes each
  event with probability ``magnitude`` (a fraction) for ``duration`` ticks.
* An incident is *detected* by an alarm at a tick ``t`` with
  ``onset <= t <= deadline`` (both inclusive), ``deadline = onset +
  horizon``, clipped to the last tick.
* Indicators: an incident emits an ordered, scenario-specific sequence of
  TETH kinds (:data:`KINDS`) from its involved nodes, spread evenly over the
  ``lead_ticks`` before onset, the last one at onset. All copies of one step
  share one ``sch`` (the same intel seen by several stations). Indicator
  kinds also occur rarely in the background (0.4% of background events).

Event files (``write_events`` / ``read_events``) are CSV (header
``ts,node,kind,value,station,seq,sch``), JSONL (one object per line, the same
keys) or ``.npy`` of :data:`~ctas7.events.EVENT_DTYPE`; a run's ground truth
goes to the sidecar ``<file>.truth.json`` (``save_run`` / ``load_run``).

Examples
--------
>>> from ctas7.sim import scenarios
>>> len(scenarios.SCENARIOS)
41
>>> sc = scenarios.get("madrid_2004")
>>> run = sc.generate(seed=7)
>>> run.activity.shape == (sc.n_ticks, sc.n_nodes), run.activity.dtype.name
(True, 'float32')
>>> inc = run.incidents[0]
>>> inc.onset <= inc.deadline and len(inc.nodes) >= scenarios.QUORUM
True
>>> bool((scenarios.bin_activity(run.events, run.tick_ns, run.n_nodes, run.n_ticks) == run.activity).all())
True
>>> null = sc.generate(seed=7, null=True)
>>> null.incidents, null.activity.shape == run.activity.shape
((), True)
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctas7.events import EVENT_DTYPE, KIND_CONTROL_BASE, validate_batch

__all__ = [
    "QUORUM",
    "SHAPES",
    "SEASONALITIES",
    "DOMAINS",
    "CATEGORIES",
    "KINDS",
    "KIND_NAMES",
    "INDICATOR_KINDS",
    "MAX_NODE_TICKS",
    "MAX_LINE_BYTES",
    "GroupSpec",
    "Seasonality",
    "IncidentSpec",
    "DecoySpec",
    "Scenario",
    "Incident",
    "Decoy",
    "Truth",
    "ScenarioRun",
    "SCENARIOS",
    "get",
    "bin_activity",
    "write_events",
    "read_events",
    "truth_path",
    "save_run",
    "load_run",
]

#: Assumed convergence quorum (meter ``min_hot_nodes``): incidents involve at
#: least this many nodes, near misses at most ``QUORUM - 1``.
QUORUM = 3
#: Effect shapes an involved node can show.
SHAPES = ("step", "ramp", "burst", "variance", "drop")
#: Background seasonality profiles.
SEASONALITIES = ("none", "daily", "business", "commute", "weekly", "semidiurnal", "event", "drift")
#: The five source domains (the TAPS intel channels).
DOMAINS = ("threat", "geo", "physical", "wmd", "media")
#: Scenario families.
CATEGORIES = ("dhs", "modern", "real")
#: Size budget of one run, so that Monte Carlo stays cheap.
MAX_NODE_TICKS = 15_000

#: TETH kind vocabulary; a kind's code is its index (stable: append only).
KIND_NAMES = (
    # background observations
    "report", "sensor_reading", "netflow", "social_post", "call", "transaction",
    "telemetry", "news_item", "ais_position", "patient_visit", "log_entry", "lab_result",
    # indicators
    "smuggling_report", "radiation_alarm", "flash_detection", "bio_detect",
    "lab_confirmation", "respiratory_call", "travel_alert", "syndromic_spike",
    "school_closure", "death_report", "odor_complaint", "skin_irritation",
    "perimeter_breach", "explosion", "chemical_release", "hvac_intrusion",
    "chemical_detect", "mass_casualty", "tank_breach", "seismic_p_wave",
    "seismic_s_wave", "storm_track", "evac_order", "landfall", "source_theft",
    "recon", "chemical_purchase", "suspicious_package", "product_complaint",
    "recall", "animal_illness", "movement_ban", "port_scan", "phishing",
    "credential_theft", "lateral_movement", "exfiltration", "rf_emission",
    "drone_sighting", "gps_jamming", "c2_beacon", "privilege_escalation",
    "mass_file_rename", "vpn_login", "ics_command", "gunfire_report",
    "breaker_open", "maintainer_takeover", "package_publish", "build_anomaly",
    "deepfake_video", "bot_amplification", "rumor_spread", "protest_call",
    "gps_drift", "ais_anomaly", "gps_jump", "model_query", "dna_synthesis_order",
    "equipment_purchase", "boat_landing", "vehicle_anomaly", "hostage_report",
    "weapon_sighting", "travel_anomaly", "cctv_alert", "update_push",
    "smb_exploit", "mbr_overwrite", "smb_scan", "ransom_note",
    "soho_router_compromise", "code_signing_anomaly", "dns_anomaly",
    "token_forgery", "shutdown_order", "manifesto_post", "livestream_start",
    "vehicle_rental", "usb_insertion", "plc_write", "firmware_update",
    "firmware_wipe", "suspicious_letter", "powder_report",
)  # fmt: skip
#: Kind name -> code.
KINDS = {name: code for code, name in enumerate(KIND_NAMES)}
#: Codes of the indicator kinds (everything after the background observations).
INDICATOR_KINDS = tuple(range(KIND_NAMES.index("smuggling_report"), len(KIND_NAMES)))
assert len(KINDS) == len(KIND_NAMES) < KIND_CONTROL_BASE

_BACKGROUND_INDICATOR_SHARE = 0.004
_INDICATOR_EMIT_P = 0.5
_MIN_WARMUP_TICKS = 40
_DECOY_MARGIN = 10
_SCHEMA = "ctas7.scenario-truth/1"


# ---------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------


def _range(value, name, cast=float, lo=None):
    if not (isinstance(value, tuple) and len(value) == 2):
        raise ValueError(f"{name} must be a (low, high) tuple, got {value!r}")
    a, b = cast(value[0]), cast(value[1])
    if a > b or (lo is not None and a < lo):
        raise ValueError(f"{name} must satisfy {lo if lo is not None else '-inf'} <= low <= high, got {value!r}")
    return (a, b)


@dataclass(frozen=True)
class GroupSpec:
    """A named group of nodes (a source domain, a region, a site).

    Attributes
    ----------
    name : str
        Group name, unique within its scenario.
    n_nodes : int
        Number of nodes in the group.
    rate : tuple of float
        Background events per tick per node; each node's rate is fixed per
        scenario, drawn log-uniformly from this range.
    """

    name: str
    n_nodes: int
    rate: tuple = (1.0, 4.0)

    def __post_init__(self):
        if self.n_nodes < 1:
            raise ValueError(f"group {self.name!r} needs at least one node")
        lo, hi = _range(self.rate, f"group {self.name!r} rate")
        if lo <= 0:
            raise ValueError(f"group {self.name!r} rate must be > 0")


@dataclass(frozen=True)
class Seasonality:
    """A multiplicative background profile over event time.

    Attributes
    ----------
    kind : str
        One of :data:`SEASONALITIES`. ``daily``: cosine, peak 15:00;
        ``business``: office hours (smooth 1 h
        logistic edges) on weekdays; ``commute``: peaks 08:30 and
        17:30; ``weekly``: daily cycle with quiet weekends; ``semidiurnal``:
        12.42 h tidal cycle; ``event``: a crowd hump (Gaussian, ``event_width``
        ticks sd) on ``event_groups`` centred at a seeded tick inside the
        onset window; ``drift``: a linear trend, seeded sign.
    amplitude : float
        Strength of the profile, in [0, 0.95] (``event``: peak excess, may
        exceed 1).
    zone_spread_h : float
        Local-time offset spread across groups (time zones), hours.
    event_groups : tuple of str
        Groups under the crowd hump (``event`` only).
    event_width : int
        Standard deviation of the hump in ticks (``event`` only).
    """

    kind: str = "none"
    amplitude: float = 0.0
    zone_spread_h: float = 0.0
    event_groups: tuple = ()
    event_width: int = 0

    def __post_init__(self):
        if self.kind not in SEASONALITIES:
            raise ValueError(f"unknown seasonality {self.kind!r}; expected one of {SEASONALITIES}")
        if self.kind == "event":
            if not self.event_groups or self.event_width < 1 or self.amplitude <= 0:
                raise ValueError("event seasonality needs event_groups, event_width >= 1 and amplitude > 0")
        elif not 0.0 <= self.amplitude <= 0.95:
            raise ValueError(f"seasonality amplitude must be in [0, 0.95], got {self.amplitude}")


@dataclass(frozen=True)
class IncidentSpec:
    """Recipe for one incident of a scenario (ranges are inclusive).

    Attributes
    ----------
    groups : tuple of str
        Groups the involved nodes are drawn from.
    n_nodes : tuple of int
        Number of involved nodes (at least :data:`QUORUM`).
    shape : str
        Primary effect shape (:data:`SHAPES`).
    magnitude : tuple of float
        Excess factor (step/ramp/burst), gamma CV (variance) or removed
        fraction (drop) of the primary shape; each node jitters it by +-25%.
    duration : tuple of int
        Effect length in ticks (burst: decay constant).
    horizon : int
        Detection horizon: ``deadline = onset + horizon``.
    stagger : tuple of int
        Spread of the nodes' start ticks after onset.
    ordered : bool
        Nodes start in node order (a front moving through space) instead of
        at random offsets.
    lead : tuple of int
        Ticks from the first indicator to onset.
    indicators : tuple of str
        Ordered TETH kinds emitted before/at onset.
    group_shapes : tuple of (str, str)
        Per-group shape overrides, e.g. ``(("geo", "drop"),)``.
    drop_fraction : tuple of float
        Removed fraction for nodes whose override shape is ``drop``.
    override_magnitude : tuple of float
        Magnitude for nodes whose override shape is not ``drop``.
    ramp : tuple of int, optional
        Ramp length in ticks (defaults to a third of the duration).
    after : tuple of int, optional
        Onset relative to the previous incident's onset (later incidents).
    anchor : str
        ``"window"``: first onset uniform in the scenario's onset window;
        ``"event"``: relative to the crowd-hump centre, by ``anchor_offset``.
    anchor_offset : tuple of int
        Offset of the onset from the hump centre (``anchor="event"``).
    """

    groups: tuple
    n_nodes: tuple
    shape: str
    magnitude: tuple
    duration: tuple
    horizon: int
    stagger: tuple = (0, 0)
    ordered: bool = False
    lead: tuple = (0, 0)
    indicators: tuple = ()
    group_shapes: tuple = ()
    drop_fraction: tuple = (0.6, 0.9)
    override_magnitude: tuple = (2.0, 5.0)
    ramp: tuple | None = None
    after: tuple | None = None
    anchor: str = "window"
    anchor_offset: tuple = (0, 0)

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; expected one of {SHAPES}")
        lo, hi = _range(self.n_nodes, "n_nodes", int)
        if lo < QUORUM:
            raise ValueError(f"an incident involves at least QUORUM={QUORUM} nodes, got n_nodes={self.n_nodes}")
        _range(self.magnitude, "magnitude", float, 0.0)
        _range(self.duration, "duration", int, 1)
        _range(self.stagger, "stagger", int, 0)
        _range(self.lead, "lead", int, 0)
        fr = _range(self.drop_fraction, "drop_fraction", float, 0.0)
        _range(self.override_magnitude, "override_magnitude", float, 0.0)
        if (self.shape == "drop" and self.magnitude[1] >= 1.0) or fr[1] >= 1.0:
            raise ValueError("a drop removes a fraction < 1 of events")
        if self.ramp is not None:
            _range(self.ramp, "ramp", int, 1)
        if self.after is not None:
            _range(self.after, "after", int, 0)
        if self.anchor not in ("window", "event"):
            raise ValueError(f"anchor must be 'window' or 'event', got {self.anchor!r}")
        _range(self.anchor_offset, "anchor_offset", int)
        if self.horizon < 1:
            raise ValueError("horizon must be >= 1 tick")
        for g, s in self.group_shapes:
            if s not in SHAPES:
                raise ValueError(f"unknown shape {s!r} for group {g!r}")
            if g not in self.groups:
                raise ValueError(f"group_shapes names {g!r}, which is not among the incident's groups")
        for k in self.indicators:
            if k not in KINDS:
                raise ValueError(f"unknown indicator kind {k!r}")


@dataclass(frozen=True)
class DecoySpec:
    """How many decoys a run carries (the same in incident and null runs).

    Attributes
    ----------
    spikes : tuple of int
        Single-node spikes per run.
    spike_magnitude : tuple of float
        Excess factor of a spike.
    spike_length : tuple of int
        Spike length in ticks.
    near_misses : tuple of int
        Near misses per run: 1 or 2 nodes (``< QUORUM``) showing the first
        incident's shape and partial indicator sequence.
    """

    spikes: tuple = (1, 3)
    spike_magnitude: tuple = (4.0, 8.0)
    spike_length: tuple = (1, 3)
    near_misses: tuple = (0, 2)

    def __post_init__(self):
        _range(self.spikes, "spikes", int, 0)
        _range(self.spike_magnitude, "spike_magnitude", float, 0.0)
        _range(self.spike_length, "spike_length", int, 1)
        _range(self.near_misses, "near_misses", int, 0)


# ---------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Incident:
    """Ground truth of one incident in a run (ticks are indices into the run).

    Attributes
    ----------
    onset : int
        First tick of the effect (the earliest involved node).
    deadline : int
        Last tick at which an alarm still counts as a detection (inclusive).
    nodes : tuple of int
        Involved nodes, ascending.
    group : int
        The group most involved nodes belong to (lowest index on ties).
    lead_ticks : int
        Ticks between the first indicator and onset.
    shape : str
        Primary effect shape.
    magnitude : float
        Primary magnitude before per-node jitter.
    duration : int
        Effect length (burst: decay constant), ticks.
    node_onsets : tuple of int
        Start tick of each involved node (parallel to ``nodes``).
    node_shapes : tuple of str
        Shape of each involved node.
    node_magnitudes : tuple of float
        Magnitude of each involved node.
    indicators : tuple of int
        Indicator kind codes, in order.
    indicator_ticks : tuple of int
        Tick of each indicator step.
    """

    onset: int
    deadline: int
    nodes: tuple
    group: int
    lead_ticks: int
    shape: str
    magnitude: float
    duration: int
    node_onsets: tuple
    node_shapes: tuple
    node_magnitudes: tuple
    indicators: tuple
    indicator_ticks: tuple

    @property
    def effect_end(self) -> int:
        """First tick after every involved node's effect (a burst lasts 4
        decay constants): the incident is still going on before it."""
        return max(o + effect_length(s, self.duration) for o, s in zip(self.node_onsets, self.node_shapes))


@dataclass(frozen=True)
class Decoy:
    """Ground truth of one decoy: activity that is not an incident.

    Attributes
    ----------
    kind : str
        ``"spike"`` (one node) or ``"near_miss"`` (1 or 2 nodes).
    start, end : int
        Affected ticks ``[start, end)``.
    nodes : tuple of int
        Affected nodes.
    shape : str
        Effect shape.
    magnitude : float
        Effect magnitude (see :data:`SHAPES` conventions).
    indicators : tuple of int
        Near misses: the incident's indicator kinds emitted, all but the last.
    indicator_ticks : tuple of int
        Tick of each emitted indicator step.
    """

    kind: str
    start: int
    end: int
    nodes: tuple
    shape: str
    magnitude: float
    indicators: tuple = ()
    indicator_ticks: tuple = ()


@dataclass(frozen=True)
class Truth:
    """Everything known about a run except its data: JSON-serialisable.

    ``groups`` holds the group index of every node. ``null`` runs have no
    incidents. ``t0_ns`` is the event time of the start of tick 0.
    """

    name: str
    seed: int
    null: bool
    tick_ns: int
    n_ticks: int
    n_nodes: int
    groups: tuple
    group_names: tuple
    quorum: int
    incidents: tuple
    decoys: tuple
    t0_ns: int = 0

    @property
    def node_hours(self) -> float:
        """Observed node-hours (nodes x run length)."""
        return self.n_nodes * self.n_ticks * self.tick_ns / 3.6e12

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["schema"] = _SCHEMA
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: dict) -> Truth:
        """Inverse of :meth:`to_dict`; unknown or missing keys are errors."""
        if not isinstance(d, dict):
            raise ValueError(f"truth must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        if d.pop("schema", None) != _SCHEMA:
            raise ValueError(f"truth file is not a {_SCHEMA} document")
        incidents = tuple(_record(Incident, x) for x in d.pop("incidents", ()))
        decoys = tuple(_record(Decoy, x) for x in d.pop("decoys", ()))
        t = _record(cls, {**d, "incidents": incidents, "decoys": decoys})
        if len(t.groups) != t.n_nodes or t.tick_ns <= 0 or t.n_ticks <= 0:
            raise ValueError("truth is inconsistent: groups/n_nodes/tick_ns/n_ticks")
        return t


def _record(cls, d):
    if not isinstance(d, dict):
        raise ValueError(f"{cls.__name__} must be a JSON object")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {sorted(unknown)}")
    required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
    missing = required - set(d)
    if missing:
        raise ValueError(f"missing {cls.__name__} field(s): {sorted(missing)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# ---------------------------------------------------------------------------
# A run
# ---------------------------------------------------------------------------


class ScenarioRun:
    """One generated (or loaded) run: activity, events and ground truth.

    Attributes
    ----------
    truth : Truth
        Ground truth; its fields are also readable on the run
        (``run.incidents``, ``run.tick_ns``, ...).
    activity : numpy.ndarray
        float32 ``[n_ticks, n_nodes]``, C-contiguous: the per-tick sum of
        event values, exactly ``bin_activity(run.events, ...)``.
    expected : numpy.ndarray or None
        float32 ``[n_ticks, n_nodes]`` background mean (rates x seasonality,
        without noise, decoys or incidents); None for loaded runs.
    groups : numpy.ndarray
        int32 group index per node.

    Notes
    -----
    ``events`` is built on first access from the run's own random stream and
    then cached, so Monte Carlo that only needs ``activity`` never pays for
    the event stream.
    """

    def __init__(self, truth: Truth, activity: np.ndarray, expected=None, events=None, *, _recipe=None):
        self.truth = truth
        self.activity = activity
        self.expected = expected
        self.groups = np.asarray(truth.groups, dtype=np.int32)
        self._events = events
        self._recipe = _recipe

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return getattr(self.__dict__["truth"], name)
        except (KeyError, AttributeError):
            raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}") from None

    def __repr__(self):
        return (
            f"ScenarioRun({self.truth.name!r}, seed={self.truth.seed}, null={self.truth.null}, "
            f"ticks={self.truth.n_ticks}, nodes={self.truth.n_nodes}, incidents={len(self.truth.incidents)})"
        )

    @property
    def events(self) -> np.ndarray:
        """Time-sorted EVENT_DTYPE stream whose binning is ``activity``."""
        if self._events is None:
            self._events = _materialize(*self._recipe)
            self._recipe = None
        return self._events

    @property
    def node_hours(self) -> float:
        """Observed node-hours."""
        return self.truth.node_hours


# ---------------------------------------------------------------------------
# Scenario
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A named, seeded generator of multi-node runs with ground truth.

    Attributes
    ----------
    name : str
        Registry key.
    title : str
        Human-readable name.
    category : str
        ``"dhs"``, ``"modern"`` or ``"real"``.
    summary : str
        What the scenario models and why it has this structure.
    tick_s : int
        Tick length in seconds of event time.
    n_ticks : int
        Run length in ticks.
    groups : tuple of GroupSpec
        Node groups, in node order.
    seasonality : Seasonality
        Background profile.
    dispersion : float or None
        Gamma shape of per-cell rate noise (over-dispersed counts; smaller is
        noisier); None for plain Poisson.
    incidents : tuple of IncidentSpec
        Incident recipes, in onset order.
    onset : tuple of float
        Window for the first onset (or the crowd-hump centre), as fractions
        of the run.
    decoys : DecoySpec
        Decoy counts.
    stations_per_node : int
        Stations reporting on each node.
    background : tuple of (str, float)
        Background kinds and weights.
    """

    name: str
    title: str
    category: str
    summary: str
    tick_s: int
    n_ticks: int
    groups: tuple
    seasonality: Seasonality
    dispersion: float | None
    incidents: tuple
    onset: tuple
    decoys: DecoySpec = DecoySpec()
    stations_per_node: int = 1
    background: tuple = (("report", 1.0),)
    _node_group: np.ndarray = field(init=False, repr=False, compare=False)
    _node_rates: np.ndarray = field(init=False, repr=False, compare=False)
    _key: int = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        self._validate()
        key = zlib.crc32(self.name.encode())
        rng = np.random.default_rng([key, 0x70B0])
        node_group = np.repeat(np.arange(len(self.groups), dtype=np.int32), [g.n_nodes for g in self.groups])
        rates = np.concatenate(
            [np.exp(rng.uniform(np.log(g.rate[0]), np.log(g.rate[1]), g.n_nodes)) for g in self.groups]
        )
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_node_group", node_group)
        object.__setattr__(self, "_node_rates", rates)
        node_group.flags.writeable = False
        rates.flags.writeable = False

    # -- validation -----------------------------------------------------

    def _validate(self):
        if self.category not in CATEGORIES:
            raise ValueError(f"{self.name}: category must be one of {CATEGORIES}")
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: group names must be unique")
        n = sum(g.n_nodes for g in self.groups)
        if not 8 <= n <= 40:
            raise ValueError(f"{self.name}: {n} nodes, expected 8-40")
        if not 200 <= self.n_ticks <= 600 or n * self.n_ticks > MAX_NODE_TICKS:
            raise ValueError(f"{self.name}: {self.n_ticks} ticks x {n} nodes exceeds the run budget")
        if self.tick_s <= 0 or self.stations_per_node < 1:
            raise ValueError(f"{self.name}: tick_s and stations_per_node must be positive")
        if self.dispersion is not None and self.dispersion <= 0:
            raise ValueError(f"{self.name}: dispersion must be > 0 or None")
        if not self.incidents:
            raise ValueError(f"{self.name}: a scenario needs at least one incident")
        for g in self.seasonality.event_groups:
            if g not in names:
                raise ValueError(f"{self.name}: seasonality names unknown group {g!r}")
        for k, w in self.background:
            if k not in KINDS or w <= 0:
                raise ValueError(f"{self.name}: bad background kind {k!r}/{w}")
        lo, hi = _range(self.onset, "onset", float, 0.0)
        lo_t, hi_t = self._onset_ticks()
        if lo_t < _MIN_WARMUP_TICKS or hi > 1.0:
            raise ValueError(f"{self.name}: onset window must leave >= {_MIN_WARMUP_TICKS} warm-up ticks")
        earliest, latest = lo_t, hi_t
        for i, spec in enumerate(self.incidents):
            for g in spec.groups:
                if g not in names:
                    raise ValueError(f"{self.name}: incident {i} names unknown group {g!r}")
            pool = sum(gr.n_nodes for gr in self.groups if gr.name in spec.groups)
            if spec.n_nodes[0] > pool:
                raise ValueError(f"{self.name}: incident {i} needs {spec.n_nodes[0]} nodes, its groups hold {pool}")
            if i == 0:
                if spec.after is not None:
                    raise ValueError(f"{self.name}: the first incident cannot be 'after' another")
                if spec.anchor == "event":
                    if self.seasonality.kind != "event":
                        raise ValueError(f"{self.name}: anchor='event' needs event seasonality")
                    earliest += spec.anchor_offset[0]
                    latest += spec.anchor_offset[1]
                if spec.lead[1] > earliest:
                    raise ValueError(f"{self.name}: lead {spec.lead} reaches before tick 0")
            else:
                if spec.after is None or spec.anchor != "window":
                    raise ValueError(f"{self.name}: later incidents are placed 'after' the previous one")
                earliest += spec.after[0]
                latest += spec.after[1]
            if latest + spec.horizon > self.n_ticks - 1:
                raise ValueError(f"{self.name}: incident {i} deadline can fall after the run ends")

    def _onset_ticks(self):
        return math.ceil(self.onset[0] * self.n_ticks), math.floor(self.onset[1] * self.n_ticks)

    # -- structure --------------------------------------------------------

    @property
    def tick_ns(self) -> int:
        """Tick length in ns."""
        return self.tick_s * 1_000_000_000

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return int(self._node_group.shape[0])

    @property
    def n_groups(self) -> int:
        """Number of groups."""
        return len(self.groups)

    @property
    def group_names(self) -> tuple:
        """Group names, by group index."""
        return tuple(g.name for g in self.groups)

    @property
    def node_groups(self) -> np.ndarray:
        """int32 group index of every node (read-only)."""
        return self._node_group

    @property
    def node_rates(self) -> np.ndarray:
        """Background events per tick of every node (read-only)."""
        return self._node_rates

    @property
    def indicator_sequences(self) -> tuple:
        """Indicator kind names of each incident recipe."""
        return tuple(s.indicators for s in self.incidents)

    @property
    def signature(self) -> tuple:
        """Structural attributes that tell scenarios apart.

        ``(n_nodes, n_groups, tick_s, n_ticks, seasonality kind, dispersion,
        number of incidents, per-incident (shape, override shapes, ordered
        stagger, anchor), indicator sequences)``.
        """
        return (
            self.n_nodes,
            self.n_groups,
            self.tick_s,
            self.n_ticks,
            self.seasonality.kind,
            self.dispersion,
            len(self.incidents),
            tuple(
                (s.shape, tuple(sorted(set(sh for _, sh in s.group_shapes))), s.ordered, s.anchor)
                for s in self.incidents
            ),
            self.indicator_sequences,
        )

    # -- generation -------------------------------------------------------

    def generate(self, seed: int, null: bool = False) -> ScenarioRun:
        """Generate one run.

        Parameters
        ----------
        seed : int
            Non-negative seed; the same seed gives identical bytes.
        null : bool
            Leave the incidents (and their indicators) out. Everything else
            (background, seasonality, noise, decoys) is identical to the
            incident run of the same seed.

        Returns
        -------
        ScenarioRun

        Examples
        --------
        >>> sc = get("ukraine_grid_2015")
        >>> a, b = sc.generate(3), sc.generate(3)
        >>> a.activity.tobytes() == b.activity.tobytes()
        True
        >>> a.incidents[0].shape
        'drop'
        """
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        seed = int(seed)
        bg_ss, decoy_ss, inc_ss, ev_ss = np.random.SeedSequence([self._key, seed]).spawn(4)
        T, N = self.n_ticks, self.n_nodes
        rng = np.random.default_rng(bg_ss)
        season, hump = self._season(rng)
        lam = season[:, self._node_group] * self._node_rates
        noisy = lam * rng.gamma(self.dispersion, 1.0 / self.dispersion, (T, N)) if self.dispersion else lam
        counts = rng.poisson(noisy)
        ind: list = []
        decoys = self._decoys(np.random.default_rng(decoy_ss), lam, counts, ind)
        incidents = () if null else self._incidents(np.random.default_rng(inc_ss), lam, counts, ind, hump)
        if ind:
            it, inode, ikind, isch = (np.concatenate(x) for x in zip(*ind))
        else:
            it = inode = np.zeros(0, np.int64)
            ikind = np.zeros(0, np.uint16)
            isch = np.zeros(0, np.uint64)
        activity = counts.astype(np.float32)
        if it.size:
            activity += np.bincount(it * N + inode, minlength=T * N).reshape(T, N).astype(np.float32)
        truth = Truth(
            name=self.name,
            seed=seed,
            null=bool(null),
            tick_ns=self.tick_ns,
            n_ticks=T,
            n_nodes=N,
            groups=tuple(int(g) for g in self._node_group),
            group_names=self.group_names,
            quorum=QUORUM,
            incidents=incidents,
            decoys=decoys,
        )
        recipe = (self, counts, (it, inode, ikind, isch), ev_ss)
        return ScenarioRun(truth, activity, lam.astype(np.float32), _recipe=recipe)

    def _season(self, rng):
        s = self.seasonality
        T, G = self.n_ticks, self.n_groups
        t = np.arange(T, dtype=np.float64)[:, None]
        start_h = rng.uniform(0.0, 24.0 * 7)
        zone = np.linspace(0.0, s.zone_spread_h, G)[None, :] if G > 1 else np.zeros((1, 1))
        h = start_h + t * (self.tick_s / 3600.0) + zone
        hod = np.mod(h, 24.0)
        # weekend weight: ~1 Sat-Sun, ~0 Mon-Fri, with transitions over ~6 h so
        # that a common-mode step does not masquerade as a convergence
        week_phase = 2 * np.pi * (np.mod(h, 168.0) - 144.0) / 168.0
        weekend = 1.0 / (1.0 + np.exp(-(np.cos(week_phase) - np.cos(2 * np.pi * 24.0 / 168.0)) / 0.05))
        A = s.amplitude
        hump = None
        if s.kind == "none":
            f = np.ones((T, G))
        elif s.kind == "daily":
            f = 1.0 + A * np.cos(2 * np.pi * (hod - 15.0) / 24.0)
        elif s.kind == "business":
            office = 1.0 / (1.0 + np.exp(-(hod - 8.0) / 1.0)) / (1.0 + np.exp(-(18.0 - hod) / 1.0))
            f = (1.0 - A) + 2.0 * A * office * (1.0 - weekend)
        elif s.kind == "commute":
            peaks = np.exp(-0.5 * ((hod - 8.5) / 1.2) ** 2) + np.exp(-0.5 * ((hod - 17.5) / 1.2) ** 2)
            f = (1.0 - 0.5 * A) + A * peaks
        elif s.kind == "weekly":
            f = (1.0 + 0.5 * A * np.cos(2 * np.pi * (hod - 14.0) / 24.0)) * (1.0 - A * weekend)
        elif s.kind == "semidiurnal":
            f = 1.0 + A * np.cos(2 * np.pi * h / 12.42)
        elif s.kind == "event":
            lo, hi = self._onset_ticks()
            hump = int(rng.integers(lo, hi + 1))
            on = np.array([g.name in s.event_groups for g in self.groups])
            f = 1.0 + A * np.exp(-0.5 * ((t - hump) / s.event_width) ** 2) * on[None, :]
        else:  # drift
            sign = 1.0 if rng.random() < 0.5 else -1.0
            f = 1.0 + A * sign * (2.0 * t / (T - 1) - 1.0) * np.ones((1, G))
        return np.maximum(np.broadcast_to(f, (T, G)), 0.05), hump

    def _pool(self, groups):
        mask = np.isin(self._node_group, [i for i, g in enumerate(self.groups) if g.name in groups])
        return np.flatnonzero(mask)

    def _shape_of(self, spec, node):
        gname = self.groups[self._node_group[node]].name
        for g, s in spec.group_shapes:
            if g == gname:
                return s
        return spec.shape

    def _node_magnitude(self, rng, spec, shape, base):
        if shape != spec.shape:
            base = rng.uniform(*(spec.drop_fraction if shape == "drop" else spec.override_magnitude))
        m = base * rng.uniform(0.75, 1.25)
        return min(m, 0.98) if shape == "drop" else m

    def _incidents(self, rng, lam, counts, ind, hump):
        T = self.n_ticks
        out = []
        prev = None
        lo_t, hi_t = self._onset_ticks()
        for spec in self.incidents:
            if prev is not None:
                onset = prev + int(rng.integers(spec.after[0], spec.after[1] + 1))
            elif spec.anchor == "event":
                onset = hump + int(rng.integers(spec.anchor_offset[0], spec.anchor_offset[1] + 1))
            else:
                onset = int(rng.integers(lo_t, hi_t + 1))
            prev = onset
            pool = self._pool(spec.groups)
            k = int(rng.integers(spec.n_nodes[0], min(spec.n_nodes[1], pool.size) + 1))
            nodes = np.sort(rng.choice(pool, size=k, replace=False))
            spread = int(rng.integers(spec.stagger[0], spec.stagger[1] + 1))
            if spec.ordered:
                offs = np.rint(np.linspace(0, spread, k)).astype(np.int64)
            else:
                offs = rng.integers(0, spread + 1, size=k)
                offs -= offs.min()
            duration = int(rng.integers(spec.duration[0], spec.duration[1] + 1))
            ramp_rng = spec.ramp or (max(1, duration // 3),) * 2
            ramp = int(rng.integers(ramp_rng[0], ramp_rng[1] + 1))
            magnitude = float(rng.uniform(*spec.magnitude))
            shapes, mags = [], []
            for node, off in zip(nodes.tolist(), offs.tolist()):
                shape = self._shape_of(spec, node)
                m = self._node_magnitude(rng, spec, shape, magnitude)
                _apply(rng, counts, lam, node, onset + off, shape, m, duration, ramp)
                shapes.append(shape)
                mags.append(round(m, 6))
            lead = int(rng.integers(spec.lead[0], spec.lead[1] + 1))
            codes = tuple(KINDS[k_] for k_ in spec.indicators)
            ticks = _emit_indicators(rng, ind, codes, nodes, onset, lead)
            group = int(np.bincount(self._node_group[nodes]).argmax())
            out.append(
                Incident(
                    onset=onset,
                    deadline=min(T - 1, onset + spec.horizon),
                    nodes=tuple(nodes.tolist()),
                    group=group,
                    lead_ticks=onset - ticks[0] if ticks else 0,
                    shape=spec.shape,
                    magnitude=round(magnitude, 6),
                    duration=duration,
                    node_onsets=tuple((onset + offs).tolist()),
                    node_shapes=tuple(shapes),
                    node_magnitudes=tuple(mags),
                    indicators=codes,
                    indicator_ticks=ticks,
                )
            )
        return tuple(out)

    def _decoys(self, rng, lam, counts, ind):
        T, N = self.n_ticks, self.n_nodes
        d = self.decoys
        out = []
        for _ in range(int(rng.integers(d.spikes[0], d.spikes[1] + 1))):
            node = int(rng.integers(N))
            length = int(rng.integers(d.spike_length[0], d.spike_length[1] + 1))
            start = int(rng.integers(_DECOY_MARGIN, T - length))
            m = float(rng.uniform(*d.spike_magnitude))
            counts[start : start + length, node] += rng.poisson(lam[start : start + length, node] * m)
            out.append(Decoy("spike", start, start + length, (node,), "step", round(m, 6)))
        spec = self.incidents[0]
        pool = self._pool(spec.groups)
        codes = tuple(KINDS[k] for k in spec.indicators)
        for _ in range(int(rng.integers(d.near_misses[0], d.near_misses[1] + 1))):
            k = int(rng.integers(1, QUORUM))
            nodes = np.sort(rng.choice(pool, size=k, replace=False))
            duration = int(rng.integers(spec.duration[0], spec.duration[1] + 1))
            start = int(rng.integers(_DECOY_MARGIN, T - 2))
            ramp_rng = spec.ramp or (max(1, duration // 3),) * 2
            ramp = int(rng.integers(ramp_rng[0], ramp_rng[1] + 1))
            magnitude = float(rng.uniform(*spec.magnitude))
            shape = spec.shape
            for node in nodes.tolist():
                shape = self._shape_of(spec, node)
                m = self._node_magnitude(rng, spec, shape, magnitude)
                _apply(rng, counts, lam, node, start, shape, m, duration, ramp)
            emitted, ticks = (), ()
            if len(codes) >= 2:
                lead = min(start, int(rng.integers(spec.lead[0], spec.lead[1] + 1)))
                emitted = codes[:-1]
                ticks = _emit_indicators(rng, ind, emitted, nodes, start, lead, full_length=len(codes))
            end = min(T, start + effect_length(shape, duration))
            out.append(
                Decoy("near_miss", start, end, tuple(nodes.tolist()), shape, round(magnitude, 6), emitted, ticks)
            )
        return tuple(out)


def effect_length(shape: str, duration: int) -> int:
    """Ticks an effect of ``shape`` lasts: ``duration``, or 4 decay
    constants for a burst."""
    return 4 * duration if shape == "burst" else duration


def _apply(rng, counts, lam, node, start, shape, m, duration, ramp):
    """Apply one node's effect to the count matrix in place."""
    T = counts.shape[0]
    if start >= T:
        return
    end = min(T, start + effect_length(shape, duration))
    col = counts[start:end, node]
    base = lam[start:end, node]
    t = np.arange(end - start, dtype=np.float64)
    if shape == "step":
        col += rng.poisson(base * m)
    elif shape == "ramp":
        col += rng.poisson(base * m * np.minimum(1.0, (t + 1.0) / ramp))
    elif shape == "burst":
        col += rng.poisson(base * m * np.exp(-t / duration))
    elif shape == "drop":
        col[:] = rng.binomial(col, 1.0 - m)
    else:  # variance: mean-preserving gamma mixing, as thinning plus excess
        k = 1.0 / (m * m)
        g = rng.gamma(k, 1.0 / k, size=end - start)
        up = g > 1.0
        col[up] += rng.poisson(base[up] * (g[up] - 1.0))
        col[~up] = rng.binomial(col[~up], g[~up])
    counts[start:end, node] = col


def _emit_indicators(rng, ind, codes, nodes, onset, lead, full_length=None):
    """Spread ``codes`` over ``[onset - lead, onset]``; return their ticks."""
    m = full_length or len(codes)
    if not codes:
        return ()
    if m == 1:
        ticks = np.array([onset], dtype=np.int64)
    else:
        ticks = (onset - lead + np.rint(np.arange(m) * lead / (m - 1)).astype(np.int64))[: len(codes)]
    sch = rng.integers(1, 2**63, size=len(codes), dtype=np.int64).astype(np.uint64)
    for j in range(len(codes)):
        emit = nodes[rng.random(nodes.size) < _INDICATOR_EMIT_P]
        if emit.size == 0:
            emit = nodes[[int(rng.integers(nodes.size))]]
        n = emit.size
        ind.append(
            (
                np.full(n, ticks[j], np.int64),
                emit.astype(np.int64),
                np.full(n, codes[j], np.uint16),
                np.full(n, sch[j], np.uint64),
            )
        )
    return tuple(ticks.tolist())


def _materialize(scenario: Scenario, counts, indicators, ev_ss) -> np.ndarray:
    """Expand a count matrix (plus indicator events) into a sorted stream."""
    rng = np.random.default_rng(ev_ss)
    T, N = counts.shape
    it, inode, ikind, isch = indicators
    flat = np.repeat(np.arange(T * N, dtype=np.int64), counts.ravel())
    n_bg = flat.size
    tick = np.concatenate([flat // N, it])
    node = np.concatenate([flat % N, inode])
    names = [k for k, _ in scenario.background]
    w = np.array([w for _, w in scenario.background], dtype=np.float64)
    extra = [k for s in scenario.incidents for k in s.indicators if k not in names]
    extra = list(dict.fromkeys(extra))
    p = w / w.sum()
    if extra:
        p = np.concatenate([p * (1.0 - _BACKGROUND_INDICATOR_SHARE), np.full(len(extra), _BACKGROUND_INDICATOR_SHARE / len(extra))])
    codes = np.array([KINDS[k] for k in names + extra], dtype=np.uint16)
    kind = np.concatenate([codes[rng.choice(codes.size, size=n_bg, p=p)], ikind])
    sch = np.concatenate([rng.integers(0, 2**64 - 1, size=n_bg, dtype=np.uint64, endpoint=True), isch])
    tick_ns = scenario.tick_ns
    ts = tick * tick_ns + rng.integers(0, tick_ns, size=tick.size)
    spn = scenario.stations_per_node
    station = node * spn + (rng.integers(0, spn, size=tick.size) if spn > 1 else 0)
    order = np.argsort(ts, kind="stable")
    out = np.empty(tick.size, dtype=EVENT_DTYPE)
    out["ts"] = ts[order]
    out["node"] = node[order]
    out["kind"] = kind[order]
    out["value"] = 1.0
    out["station"] = station[order]
    out["sch"] = sch[order]
    out["seq"] = _station_seq(out["station"])
    return out


def _station_seq(station: np.ndarray) -> np.ndarray:
    """0-based per-station sequence numbers in stream order."""
    n = station.shape[0]
    order = np.argsort(station, kind="stable")
    st = station[order]
    starts = np.r_[0, np.flatnonzero(np.diff(st)) + 1]
    run = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    seq = np.empty(n, dtype=np.uint32)
    seq[order] = run
    return seq


# ---------------------------------------------------------------------------
# Binning
# ---------------------------------------------------------------------------


def bin_activity(events, tick_ns: int, n_nodes: int, n_ticks: int, *, t0_ns: int = 0) -> np.ndarray:
    """Sum event values per (tick, node): the meter's activity matrix.

    Control events (``kind >= KIND_CONTROL_BASE``) and events outside
    ``[t0_ns, t0_ns + n_ticks * tick_ns)`` are ignored; an in-range event
    for a node ``>= n_nodes`` or with a non-finite value is an error.

    Parameters
    ----------
    events : numpy.ndarray of EVENT_DTYPE
    tick_ns : int
        Tick length in ns.
    n_nodes, n_ticks : int
        Shape of the result.
    t0_ns : int
        Event time of the start of tick 0.

    Returns
    -------
    numpy.ndarray
        float32 ``[n_ticks, n_nodes]``, C-contiguous.

    Examples
    --------
    >>> from ctas7.events import make_events
    >>> ev = make_events(ts=[0, 5, 10, 25], node=[0, 1, 1, 0], value=[1, 2, 3, 4])
    >>> bin_activity(ev, tick_ns=10, n_nodes=2, n_ticks=3).tolist()
    [[1.0, 2.0], [0.0, 3.0], [4.0, 0.0]]
    """
    validate_batch(events, name="events")
    tick_ns, n_nodes, n_ticks = int(tick_ns), int(n_nodes), int(n_ticks)
    if tick_ns <= 0 or n_nodes <= 0 or n_ticks <= 0:
        raise ValueError(f"tick_ns, n_nodes and n_ticks must be positive, got {tick_ns}, {n_nodes}, {n_ticks}")
    rel = events["ts"] - np.int64(t0_ns)
    tick = rel // tick_ns
    keep = (rel >= 0) & (tick < n_ticks) & (events["kind"] < KIND_CONTROL_BASE)
    node = events["node"][keep].astype(np.int64)
    if node.size and int(node.max()) >= n_nodes:
        raise ValueError(f"event for node {int(node.max())} but n_nodes={n_nodes}")
    value = events["value"][keep]
    if not np.isfinite(value).all():
        raise ValueError("events carry non-finite values")
    acc = np.bincount(tick[keep] * n_nodes + node, weights=value, minlength=n_ticks * n_nodes)
    return np.ascontiguousarray(acc.reshape(n_ticks, n_nodes), dtype=np.float32)


# ---------------------------------------------------------------------------
# Event files
# ---------------------------------------------------------------------------

_COLUMNS = ("ts", "node", "kind", "value", "station", "seq", "sch")
_REQUIRED = ("ts", "node", "kind")
_DEFAULTS = {"value": 1.0, "station": 0, "seq": 0, "sch": 0}
_INT_BOUNDS = {
    "ts": (-(2**63), 2**63 - 1),
    "node": (0, 2**32 - 1),
    "kind": (0, 2**16 - 1),
    "station": (0, 2**16 - 1),
    "seq": (0, 2**32 - 1),
    "sch": (0, 2**64 - 1),
}
_F32_MAX = float(np.finfo(np.float32).max)
#: Longest accepted line of a CSV/JSONL event file, bytes.
MAX_LINE_BYTES = 4096


def _format_of(path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".jsonl", ".npy"):
        return suffix[1:]
    if suffix == ".ndjson":
        return "jsonl"
    raise ValueError(f"unknown event file format {suffix!r} for {os.fspath(path)!r}; use .csv, .jsonl or .npy")


def write_events(path, events) -> Path:
    """Write a batch of events as CSV, JSONL or ``.npy`` (by suffix).

    The file is written to a temporary name and renamed into place. Values
    must be finite (strict JSON has no NaN). CSV and JSONL keep every field
    exactly (float32 values are written with a round-tripping repr).

    Parameters
    ----------
    path : str or os.PathLike
        Destination; ``.csv``, ``.jsonl`` (or ``.ndjson``) or ``.npy``.
    events : numpy.ndarray of EVENT_DTYPE

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile, os
    >>> from ctas7.events import make_events
    >>> ev = make_events(ts=[1, 2], node=[3, 4], kind=5, value=[0.1, 2.0], sch=np.array([7, 2**64 - 1], np.uint64))
    >>> d = tempfile.mkdtemp()
    >>> p = write_events(os.path.join(d, "ev.csv"), ev)
    >>> p.read_text().splitlines()[:2]
    ['ts,node,kind,value,station,seq,sch', '1,3,5,0.10000000149011612,0,0,7']
    >>> back, n_bad = read_events(p)
    >>> bool((back == ev).all()), n_bad
    (True, 0)
    """
    validate_batch(events, name="events")
    path = Path(path)
    fmt = _format_of(path)
    if not np.isfinite(events["value"]).all():
        raise ValueError("cannot write events with non-finite values")
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "npy":
        with open(tmp, "wb") as f:
            np.save(f, events, allow_pickle=False)
    else:
        cols = [events[c].tolist() for c in _COLUMNS]
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            if fmt == "csv":
                f.write(",".join(_COLUMNS) + "\n")
                f.writelines(f"{a},{b},{c},{d!r},{e},{g},{h}\n" for a, b, c, d, e, g, h in zip(*cols))
            else:
                f.writelines(
                    f'{{"ts":{a},"node":{b},"kind":{c},"value":{d!r},"station":{e},"seq":{g},"sch":{h}}}\n'
                    for a, b, c, d, e, g, h in zip(*cols)
                )
    os.replace(tmp, path)
    return path


def read_events(path, dead_letter=None, *, max_line_bytes: int = MAX_LINE_BYTES):
    """Read an event file; malformed rows are dead-lettered, not fatal.

    ``ts``, ``node`` and ``kind`` are required; ``value`` (1.0), ``station``,
    ``seq`` and ``sch`` (0) may be absent. A row is bad when it has the wrong
    number of fields, an unknown key, a value of the wrong type or out of
    its field's range, a non-finite value, or a line longer than
    ``max_line_bytes``. Blank lines are skipped. Rows come back in file order.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv``, ``.jsonl``/``.ndjson`` or ``.npy`` file.
    dead_letter : str or os.PathLike, optional
        JSONL file that each bad row is appended to, as
        ``{"file", "line", "reason", "text"}`` (``line`` is 1-based; for
        ``.npy`` it is the 1-based record index). Bad rows are counted
        either way.
    max_line_bytes : int
        Longest accepted line.

    Returns
    -------
    events : numpy.ndarray of EVENT_DTYPE
    n_bad : int
        Rows rejected.

    Raises
    ------
    FileNotFoundError, PermissionError, IsADirectoryError
        The file cannot be opened (the message names it).
    ValueError
        Unknown format, a CSV header without the required columns, or an
        ``.npy`` file that does not hold a 1-d EVENT_DTYPE array.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "ev.jsonl")
    >>> _ = open(p, "w").write('{"ts": 5, "node": 1, "kind": 2}\\n{"ts": "x", "node": 1, "kind": 2}\\n')
    >>> ev, n_bad = read_events(p, dead_letter=os.path.join(d, "bad.jsonl"))
    >>> ev["ts"].tolist(), ev["value"].tolist(), n_bad
    ([5], [1.0], 1)
    >>> json.loads(open(os.path.join(d, "bad.jsonl")).readline())["line"]
    2
    """
    path = Path(path)
    fmt = _format_of(path)
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot open event file {os.fspath(path)!r}: {exc.strerror}") from exc
    bad: list = []
    with f:
        if fmt == "npy":
            events = _read_npy(f, path, bad)
        elif fmt == "csv":
            events = _read_csv(f, path, bad, max_line_bytes)
        else:
            events = _read_jsonl(f, bad, max_line_bytes)
    if bad and dead_letter is not None:
        with open(dead_letter, "a", encoding="utf-8") as dl:
            for line, reason, text in bad:
                dl.write(json.dumps({"file": os.fspath(path), "line": line, "reason": reason, "text": text}) + "\n")
    return events, len(bad)


def _read_npy(f, path, bad):
    try:
        arr = np.load(f, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{os.fspath(path)!r} is not a readable .npy event file: {exc}") from exc
    if arr.dtype != EVENT_DTYPE or arr.ndim != 1:
        raise ValueError(f"{os.fspath(path)!r} holds {arr.dtype} {arr.shape}, expected a 1-d EVENT_DTYPE array")
    arr = np.ascontiguousarray(arr)
    finite = np.isfinite(arr["value"])
    for i in np.flatnonzero(~finite).tolist():
        bad.append((i + 1, "value is not finite", repr(arr[i].tolist())))
    return arr if finite.all() else np.ascontiguousarray(arr[finite])


def _lines(f, max_line_bytes):
    """Yield (line number, bytes or None when too long) without unbounded reads."""
    n = 0
    while True:
        line = f.readline(max_line_bytes + 1)
        if not line:
            return
        n += 1
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = f.readline(1 << 16)
            yield n, None
            continue
        yield n, line


def _check_row(rec: dict):
    """Validate one parsed row (dict of field -> Python value); return a tuple or raise ValueError."""
    unknown = set(rec) - set(_COLUMNS)
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}")
    for k in _REQUIRED:
        if k not in rec:
            raise ValueError(f"missing field {k!r}")
    row = []
    for k in _COLUMNS:
        v = rec.get(k, _DEFAULTS.get(k))
        if k == "value":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"value must be a number, got {v!r}")
            v = float(v)
            if not math.isfinite(v) or abs(v) > _F32_MAX:
                raise ValueError(f"value {v!r} is not a finite float32")
        else:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{k} must be an integer, got {v!r}")
            lo, hi = _INT_BOUNDS[k]
            if not lo <= v <= hi:
                raise ValueError(f"{k}={v} is out of range [{lo}, {hi}]")
        row.append(v)
    return tuple(row)


def _rows_to_events(rows) -> np.ndarray:
    out = np.empty(len(rows), dtype=EVENT_DTYPE)
    if rows:
        cols = list(zip(*rows))
        for name, col in zip(_COLUMNS, cols):
            out[name] = np.array(col, dtype=EVENT_DTYPE[name])
    return out


def _text(line: bytes) -> str:
    return line[:512].decode("utf-8", "replace").rstrip("\r\n")


def _read_jsonl(f, bad, max_line_bytes):
    start = f.tell()
    fast = _read_jsonl_fast(f, max_line_bytes)
    if fast is not None:
        return fast
    f.seek(start)
    rows = []
    for n, line in _lines(f, max_line_bytes):
        if line is None:
            bad.append((n, f"line longer than {max_line_bytes} bytes", ""))
            continue
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
            rows.append(_check_row(rec))
        except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            bad.append((n, str(exc), _text(line)))
    return _rows_to_events(rows)


def _jsonl_column(recs, name):
    """One column of parsed records as EVENT_DTYPE[name], or None when any
    value would need the row-by-row path's checks (wrong type, range)."""
    if name in _DEFAULTS:
        col = [r.get(name, _DEFAULTS[name]) for r in recs]
    else:
        col = [r[name] for r in recs]
    types = set(map(type, col))
    dt = EVENT_DTYPE[name]
    try:
        if name == "value":
            if not types <= {int, float}:
                return None
            v = np.array(col, dtype=np.float64)
            if not (np.isfinite(v) & (np.abs(v) <= _F32_MAX)).all():
                return None
            return v.astype(dt)
        if types != {int}:
            return None
        v = np.array(col, dtype=np.uint64 if name == "sch" else np.int64)
    except (OverflowError, ValueError):
        return None
    lo, hi = _INT_BOUNDS[name]
    if name != "sch" and not ((v >= lo) & (v <= hi)).all():
        return None
    return v.astype(dt)


def _read_jsonl_fast(f, max_line_bytes):
    """Parse the whole file with one ``json.loads``; None if any line is off.

    Rows of well-formed files then cost a few list passes instead of one
    ``json.loads`` and a dict check each (~8x faster); anything unusual
    (blank or long lines, non-objects, unknown or missing fields, wrong
    types, out-of-range values) falls back to the row-by-row reader, which
    says which line is wrong and why.
    """
    data = f.read()
    if not data.strip():
        return _rows_to_events([])
    lines = data.split(b"\n")
    if not lines[-1].strip():
        lines.pop()
    # Every line one object on its own, so no record can span two lines once
    # they are joined with commas.
    if max(map(len, lines)) > max_line_bytes:
        return None
    if not all(t[:1] == b"{" and t[-1:] == b"}" for t in map(bytes.strip, lines)):
        return None
    try:
        recs = json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:  # also UnicodeDecodeError
        return None
    if len(recs) != len(lines) or not all(type(r) is dict for r in recs):
        return None
    allowed, required = set(_COLUMNS), set(_REQUIRED)
    if not all(required <= r.keys() <= allowed for r in recs):
        return None
    out = np.empty(len(recs), dtype=EVENT_DTYPE)
    for name in _COLUMNS:
        col = _jsonl_column(recs, name)
        if col is None:
            return None
        out[name] = col
    return out


def _parse_int(s: str) -> int:
    s = s.strip()
    if not s or not (s.isdigit() or (s[0] in "+-" and s[1:].isdigit())):
        raise ValueError(f"not an integer: {s!r}")
    return int(s)


def _read_csv(f, path, bad, max_line_bytes):
    header = None
    for n, line in _lines(f, max_line_bytes):
        if line is not None and line.strip():
            header = line.decode("utf-8", "replace").strip().split(",")
            break
    if header is None:
        return _rows_to_events([])
    header = [h.strip() for h in header]
    unknown = set(header) - set(_COLUMNS)
    missing = [c for c in _REQUIRED if c not in header]
    if unknown or missing or len(set(header)) != len(header):
        raise ValueError(
            f"{os.fspath(path)!r}: CSV header {header} must name distinct columns from {_COLUMNS} "
            f"including {_REQUIRED} (unknown: {sorted(unknown)}, missing: {missing})"
        )
    header_line = n
    start = f.tell()
    fast = _read_csv_fast(f, header)
    if fast is not None:
        return fast
    f.seek(start)
    rows = []
    width = len(header)
    for n, line in _lines(f, max_line_bytes):
        n += header_line
        if line is None:
            bad.append((n, f"line longer than {max_line_bytes} bytes", ""))
            continue
        if not line.strip():
            continue
        try:
            parts = line.decode("utf-8").rstrip("\r\n").split(",")
            if len(parts) != width:
                raise ValueError(f"expected {width} fields, got {len(parts)}")
            rec = {}
            for name, s in zip(header, parts):
                if name == "value":
                    try:
                        rec[name] = float(s)
                    except ValueError:
                        raise ValueError(f"value is not a number: {s.strip()!r}") from None
                else:
                    rec[name] = _parse_int(s)
            rows.append(_check_row(rec))
        except ValueError as exc:
            bad.append((n, str(exc), _text(line)))
    return _rows_to_events(rows)


def _read_csv_fast(f, header):
    """Parse the whole body with numpy's C reader; None if any row is off."""
    dt = np.dtype([(h, EVENT_DTYPE[h]) for h in header])
    try:
        arr = np.loadtxt(f, delimiter=",", dtype=dt, comments=None, ndmin=1, encoding="utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    if "value" in header and not np.isfinite(arr["value"]).all():
        return None
    out = np.zeros(arr.shape[0], dtype=EVENT_DTYPE)
    out["value"] = 1.0
    for h in header:
        out[h] = arr[h]
    return out


# ---------------------------------------------------------------------------
# Runs on disk
# ---------------------------------------------------------------------------


def truth_path(path) -> Path:
    """The ground-truth sidecar of an event file: ``<file>.truth.json``."""
    p = Path(path)
    return p.with_name(p.name + ".truth.json")


def save_run(path, run: ScenarioRun) -> Path:
    """Write a run's events to ``path`` and its truth to the sidecar.

    Examples
    --------
    >>> import tempfile, os
    >>> run = get("drone_swarm").generate(1)
    >>> p = save_run(os.path.join(tempfile.mkdtemp(), "run.npy"), run)
    >>> back, n_bad = load_run(p)
    >>> back.truth == run.truth, bool((back.activity == run.activity).all()), n_bad
    (True, True, 0)
    """
    p = write_events(path, run.events)
    tp = truth_path(p)
    tmp = tp.with_name(tp.name + ".tmp")
    tmp.write_text(json.dumps(run.truth.to_dict(), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, tp)
    return p


def load_run(path, dead_letter=None):
    """Read an event file and its truth sidecar back into a ScenarioRun.

    Activity is re-binned from the events read, so dead-lettered rows are
    reflected in it.

    Returns
    -------
    run : ScenarioRun
        ``expected`` is None.
    n_bad : int
        Rows rejected by :func:`read_events`.
    """
    tp = truth_path(path)
    try:
        raw = tp.read_text(encoding="utf-8")
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot read truth sidecar {os.fspath(tp)!r}: {exc.strerror}") from exc
    try:
        truth = Truth.from_dict(json.loads(raw))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{os.fspath(tp)!r}: {exc}") from exc
    events, n_bad = read_events(path, dead_letter)
    activity = bin_activity(events, truth.tick_ns, truth.n_nodes, truth.n_ticks, t0_ns=truth.t0_ns)
    return ScenarioRun(truth, activity, None, events), n_bad


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------


def get(name: str) -> Scenario:
    """The registered scenario ``name``.

    >>> get("tokyo_sarin_1995").category
    'real'
    """
    try:
        return SCENARIOS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), SCENARIOS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown scenario {name!r}{hint} ({len(SCENARIOS)} registered)") from None


# ---------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------

def _g(name, n, lo=1.0, hi=4.0):
    return GroupSpec(name, n, (lo, hi))


def _catalog() -> dict:
    S, I, Se, D = Scenario, IncidentSpec, Seasonality, DecoySpec
    MIN, HOUR = 60, 3600
    scenarios = [
        # ---- 15 DHS National Planning Scenarios -------------------------
        S(
            "nuclear_device", "Improvised nuclear device", "dhs",
            "An IND smuggled into a city: sparse radiation alarms and smuggling reports precede a blast that "
            "floods physical and WMD sensors while geospatial feeds near ground zero go dark (EMP, outages).",
            MIN, 480,
            (_g("threat", 4, 0.5, 1.5), _g("geo", 4, 1, 3), _g("physical", 6, 2, 5), _g("wmd", 8, 0.3, 1), _g("media", 6, 3, 8)),
            Se("daily", 0.35), 6.0,
            (I(("wmd", "physical", "geo"), (5, 9), "burst", (4, 9), (2, 5), horizon=20, stagger=(0, 2), lead=(30, 90),
               indicators=("smuggling_report", "radiation_alarm", "radiation_alarm", "flash_detection"),
               group_shapes=(("geo", "drop"),), drop_fraction=(0.7, 0.95)),),
            (0.4, 0.75), D((1, 3), near_misses=(0, 2)), 2,
            (("report", 3), ("sensor_reading", 2), ("news_item", 1)),
        ),
        S(
            "aerosol_anthrax", "Aerosol anthrax", "dhs",
            "A covert aerosol release: BioWatch detection, then emergency-department syndromic counts ramp up "
            "over days in the downwind regions, hospital by hospital, on top of the ED daily cycle.",
            HOUR, 336,
            (_g("north", 5), _g("south", 5), _g("east", 4), _g("west", 4), _g("central", 6)),
            Se("daily", 0.3), 10.0,
            (I(("central", "east", "north"), (6, 12), "ramp", (1.5, 3.0), (72, 150), horizon=72, stagger=(0, 24),
               ramp=(24, 60), lead=(24, 72), indicators=("bio_detect", "lab_confirmation", "respiratory_call")),),
            (0.4, 0.65), D((1, 2), near_misses=(1, 2)), 1,
            (("patient_visit", 5), ("lab_result", 1)),
        ),
        S(
            "pandemic_influenza", "Pandemic influenza", "dhs",
            "A novel influenza wave reaches three macro-regions weeks apart: a slow, widely staggered ramp of "
            "influenza-like illness over a weekly clinic cycle with heavily over-dispersed counts.",
            4 * HOUR, 540,
            (_g("region_a", 9, 1, 3), _g("region_b", 9, 1, 3), _g("region_c", 9, 1, 3)),
            Se("weekly", 0.3), 4.0,
            (I(("region_a", "region_b", "region_c"), (12, 24), "ramp", (1.0, 2.5), (200, 300), horizon=120,
               stagger=(30, 90), ramp=(60, 120), lead=(12, 42),
               indicators=("travel_alert", "syndromic_spike", "lab_confirmation", "school_closure")),),
            (0.35, 0.6), D((1, 2), near_misses=(1, 1)), 1,
            (("patient_visit", 4), ("lab_result", 1), ("news_item", 1)),
        ),
        S(
            "plague", "Pneumonic plague", "dhs",
            "Two release sites seed pneumonic plague: two clusters of step increases in respiratory calls and "
            "hospital admissions a day or two apart, each with its own lab confirmations and deaths.",
            HOUR, 300,
            (_g("city", 6, 0.5, 3), _g("suburbs", 6, 0.5, 3), _g("hospitals", 4, 1, 4), _g("labs", 3, 0.3, 1)),
            Se("daily", 0.25), 8.0,
            (I(("city", "hospitals", "labs"), (3, 5), "step", (2, 4), (48, 96), horizon=36, stagger=(0, 6),
               lead=(6, 24), indicators=("respiratory_call", "lab_confirmation", "death_report")),
             I(("suburbs", "hospitals", "labs"), (3, 5), "step", (2, 4), (48, 96), horizon=36, stagger=(0, 6),
               lead=(0, 6), indicators=("respiratory_call", "death_report"), after=(18, 48))),
            (0.35, 0.5), D((1, 3), near_misses=(0, 1)), 2,
            (("call", 3), ("patient_visit", 3), ("lab_result", 1)),
        ),
        S(
            "blister_agent", "Chemical attack: blister agent", "dhs",
            "Mustard released into a stadium crowd: symptoms appear hours later, so calls and admissions ramp "
            "after the crowd has peaked and dispersed; the crowd hump itself is a confounder.",
            15 * MIN, 384,
            (_g("venue", 6, 1, 3), _g("ems", 4, 0.5, 2), _g("hospital", 6, 1, 3), _g("media", 4, 2, 5)),
            Se("event", 0.7, event_groups=("venue", "media"), event_width=16), 5.0,
            (I(("venue", "ems", "hospital"), (5, 9), "ramp", (2, 4), (24, 64), horizon=24, stagger=(0, 8),
               ramp=(4, 12), lead=(4, 16), indicators=("odor_complaint", "skin_irritation", "respiratory_call"),
               anchor="event", anchor_offset=(4, 16)),),
            (0.4, 0.65), D((1, 2), near_misses=(0, 2)), 2,
            (("call", 2), ("patient_visit", 2), ("social_post", 2)),
        ),
        S(
            "toxic_industrial_chemicals", "Chemical attack: toxic industrial chemicals", "dhs",
            "Near-simultaneous attacks on two refineries and a port/rail hub: three incidents minutes apart, "
            "each a sustained step at its own site, under shift-work seasonality.",
            MIN, 300,
            (_g("refinery_a", 4), _g("refinery_b", 4), _g("rail_yard", 3), _g("port", 3), _g("residential", 6), _g("ems", 4)),
            Se("business", 0.3), 8.0,
            (I(("refinery_a", "residential"), (3, 4), "step", (2.5, 5), (40, 90), horizon=25, stagger=(0, 3),
               lead=(10, 40), indicators=("perimeter_breach", "explosion", "chemical_release")),
             I(("refinery_b", "ems"), (3, 4), "step", (2.5, 5), (40, 90), horizon=25, stagger=(0, 3),
               indicators=("explosion", "chemical_release"), after=(0, 8)),
             I(("port", "rail_yard"), (3, 4), "step", (2.5, 5), (40, 90), horizon=25, stagger=(0, 3),
               indicators=("explosion", "chemical_release"), after=(0, 10))),
            (0.35, 0.6), D((1, 3), near_misses=(1, 2)), 1,
            (("sensor_reading", 3), ("call", 1)),
        ),
        S(
            "nerve_agent", "Chemical attack: nerve agent", "dhs",
            "Sarin through an office building's ventilation: minutes from intrusion to mass casualties, a sharp "
            "burst in building, EMS and hospital feeds during office hours; plain Poisson counts.",
            MIN, 240,
            (_g("building", 8, 0.5, 3), _g("ems", 4, 0.5, 2), _g("hospital", 4, 0.5, 2), _g("media", 4, 1, 4)),
            Se("business", 0.6), None,
            (I(("building", "ems", "hospital"), (4, 8), "burst", (5, 10), (3, 8), horizon=15, stagger=(0, 4),
               lead=(2, 10), indicators=("hvac_intrusion", "chemical_detect", "mass_casualty")),),
            (0.45, 0.8), D((1, 2), near_misses=(1, 2)), 1,
            (("sensor_reading", 4), ("call", 1)),
        ),
        S(
            "chlorine_tank_explosion", "Chlorine tank explosion", "dhs",
            "A ruptured chlorine tank: the plume moves downwind sector by sector, so respiratory calls ramp in "
            "node order, minutes apart.",
            MIN, 300,
            (_g("sector_n", 4), _g("sector_ne", 4), _g("sector_e", 4), _g("sector_se", 4), _g("ems", 4), _g("hospital", 3)),
            Se("daily", 0.3), 10.0,
            (I(("sector_ne", "sector_e", "sector_se", "ems"), (5, 9), "ramp", (2, 5), (30, 80), horizon=30,
               stagger=(10, 30), ordered=True, ramp=(5, 15), lead=(0, 3),
               indicators=("tank_breach", "explosion", "odor_complaint", "respiratory_call")),),
            (0.4, 0.8), D((1, 3), near_misses=(0, 2)), 1,
            (("call", 3), ("sensor_reading", 1)),
        ),
        S(
            "major_earthquake", "Major earthquake", "dhs",
            "A large quake: almost no warning (P then S wave), calls burst across many regions at once while "
            "the epicentral regions go silent (telecom loss); aftershocks make many single-node spikes.",
            MIN, 240,
            (_g("epicentre", 4), _g("near_field", 4), _g("coast", 4), _g("valley", 4), _g("metro_n", 4),
             _g("metro_s", 4), _g("inland", 4), _g("far_field", 4)),
            Se("daily", 0.25), 6.0,
            (I(("epicentre", "near_field", "coast", "valley", "metro_n", "metro_s", "inland", "far_field"), (12, 20),
               "burst", (4, 8), (3, 10), horizon=10, stagger=(0, 2), lead=(0, 1),
               indicators=("seismic_p_wave", "seismic_s_wave"),
               group_shapes=(("epicentre", "drop"), ("near_field", "drop")), drop_fraction=(0.7, 0.95)),),
            (0.4, 0.85), D((3, 6), near_misses=(1, 3)), 1,
            (("call", 3), ("sensor_reading", 2), ("social_post", 1)),
        ),
        S(
            "major_hurricane", "Major hurricane", "dhs",
            "A hurricane tracked for days makes landfall: power and telecom feeds drop region by region "
            "inland while shelters fill (step up).",
            HOUR, 336,
            (_g("coast_a", 5, 4, 9), _g("coast_b", 5, 4, 9), _g("inland", 5, 4, 9), _g("utility", 5, 4, 9), _g("shelters", 4, 0.5, 2)),
            Se("daily", 0.25), 15.0,
            (I(("coast_a", "coast_b", "inland", "utility", "shelters"), (8, 14), "drop", (0.7, 0.95), (24, 96),
               horizon=24, stagger=(0, 18), ordered=True, lead=(48, 110),
               indicators=("storm_track", "storm_track", "evac_order", "landfall"),
               group_shapes=(("shelters", "step"),)),),
            (0.4, 0.65), D((1, 2), near_misses=(0, 2)), 2,
            (("telemetry", 3), ("call", 1), ("news_item", 1)),
        ),
        S(
            "radiological_dispersal_device", "Radiological dispersal device", "dhs",
            "A stolen source in a conventional bomb: a short physical burst in the district and EMS, and a "
            "persistent step in radiation sensors, after a long procurement and reconnaissance lead.",
            MIN, 360,
            (_g("district_a", 5), _g("district_b", 5), _g("wmd", 6, 0.3, 1.5), _g("ems", 4), _g("media", 4, 2, 6)),
            Se("commute", 0.4), 6.0,
            (I(("wmd", "district_a", "ems"), (4, 8), "step", (3, 6), (60, 150), horizon=20, lead=(60, 120),
               indicators=("source_theft", "recon", "explosion", "radiation_alarm"),
               group_shapes=(("district_a", "burst"), ("ems", "burst")), override_magnitude=(4, 8)),),
            (0.4, 0.7), D((1, 3), near_misses=(0, 2)), 2,
            (("sensor_reading", 3), ("report", 2)),
        ),
        S(
            "improvised_explosive_device", "Improvised explosive device", "dhs",
            "A single IED: weeks of procurement and reconnaissance compressed into a long, sparse lead, then a "
            "one-tick burst in a few nodes of the five source domains.",
            MIN, 300,
            (_g("threat", 3, 0.5, 3), _g("geo", 3, 0.5, 3), _g("physical", 3, 0.5, 3), _g("wmd", 3, 0.5, 3), _g("media", 3, 0.5, 3)),
            Se("daily", 0.3), 5.0,
            (I(("physical", "threat", "media", "geo"), (3, 6), "burst", (5, 10), (1, 3), horizon=10, stagger=(0, 1),
               lead=(20, 100), indicators=("chemical_purchase", "recon", "suspicious_package", "explosion")),),
            (0.4, 0.8), D((2, 4), near_misses=(1, 2)), 2,
            (("report", 2), ("social_post", 1), ("sensor_reading", 1)),
        ),
        S(
            "food_contamination", "Food contamination", "dhs",
            "A contaminated product moves through two distributors into retail: complaints and lab reports "
            "ramp region by region over days, with very over-dispersed counts and a weekly cycle.",
            6 * HOUR, 320,
            (_g("distributor_a", 5, 0.5, 2.5), _g("distributor_b", 5, 0.5, 2.5), _g("retail", 5, 0.5, 2.5), _g("health", 5, 0.5, 2.5)),
            Se("weekly", 0.3), 3.0,
            (I(("retail", "health", "distributor_a"), (4, 10), "ramp", (1.5, 3), (40, 100), horizon=28,
               stagger=(4, 24), ramp=(8, 24), lead=(4, 16), indicators=("product_complaint", "lab_confirmation", "recall")),),
            (0.35, 0.7), D((1, 3), near_misses=(1, 2)), 1,
            (("transaction", 3), ("lab_result", 1), ("report", 1)),
        ),
        S(
            "foreign_animal_disease", "Foreign animal disease", "dhs",
            "Foot-and-mouth disease: veterinary and farm reports step up while a movement standstill makes "
            "livestock market activity drop, on 12-hour ticks over six months.",
            12 * HOUR, 360,
            (_g("farms_a", 5), _g("farms_b", 5), _g("markets", 4, 2, 6), _g("vets", 4)),
            Se("weekly", 0.25), 6.0,
            (I(("vets", "farms_a", "markets"), (4, 8), "step", (2, 4), (30, 90), horizon=14, stagger=(0, 12),
               lead=(2, 10), indicators=("animal_illness", "lab_confirmation", "movement_ban"),
               group_shapes=(("markets", "drop"),), drop_fraction=(0.6, 0.9)),),
            (0.35, 0.7), D((1, 2), near_misses=(1, 2)), 2,
            (("report", 2), ("transaction", 2)),
        ),
        S(
            "cyber_attack", "Cyber attack", "dhs",
            "An intrusion into financial infrastructure after a full kill chain: affected segments become "
            "erratic (variance up, mean unchanged) while the DNS tier steps up, during business hours.",
            MIN, 480,
            (_g("finance", 6, 1, 5), _g("payments", 5, 1, 5), _g("dns", 4, 1, 5), _g("web", 5, 1, 5), _g("soc", 4, 0.5, 2)),
            Se("business", 0.4), 4.0,
            (I(("finance", "payments", "dns", "web"), (4, 8), "variance", (1.0, 2.0), (40, 120), horizon=30,
               stagger=(0, 15), lead=(60, 150),
               indicators=("port_scan", "phishing", "credential_theft", "lateral_movement", "exfiltration"),
               group_shapes=(("dns", "step"),), override_magnitude=(1.5, 3)),),
            (0.35, 0.65), D((1, 3), near_misses=(0, 2)), 2,
            (("netflow", 4), ("log_entry", 3)),
        ),
        # ---- 7 modernised scenarios ------------------------------------
        S(
            "drone_swarm", "Drone swarm on a facility", "modern",
            "A swarm approaches a 24/7 facility: RF emissions, sightings and GPS jamming within minutes, then "
            "short bursts on the perimeter sectors it crosses; no seasonality, Poisson counts.",
            MIN, 300,
            (_g("perimeter_n", 4, 0.5, 2), _g("perimeter_s", 4, 0.5, 2), _g("perimeter_e", 3, 0.5, 2),
             _g("perimeter_w", 3, 0.5, 2), _g("rf_sensors", 4, 0.5, 2)),
            Se("none"), None,
            (I(("rf_sensors", "perimeter_n", "perimeter_e"), (4, 7), "burst", (4, 8), (2, 6), horizon=8,
               stagger=(0, 3), lead=(3, 12), indicators=("rf_emission", "drone_sighting", "gps_jamming")),),
            (0.4, 0.85), D((2, 4), near_misses=(1, 2)), 3,
            (("sensor_reading", 4), ("report", 1)),
        ),
        S(
            "hospital_ransomware", "Ransomware on a hospital network", "modern",
            "Ransomware encrypts clinical systems: EHR activity in departments drops almost to nothing while "
            "the help desk bursts; five-minute ticks over a day and a half.",
            5 * MIN, 432,
            (_g("ed", 5, 4, 9), _g("icu", 4, 4, 9), _g("lab", 4, 4, 9), _g("radiology", 4, 4, 9),
             _g("pharmacy", 3, 4, 9), _g("admin", 4, 1, 3)),
            Se("daily", 0.5), 20.0,
            (I(("ed", "lab", "radiology", "pharmacy", "admin"), (5, 10), "drop", (0.85, 0.99), (60, 200), horizon=12,
               stagger=(0, 6), lead=(24, 96),
               indicators=("phishing", "c2_beacon", "privilege_escalation", "mass_file_rename"),
               group_shapes=(("admin", "burst"),), override_magnitude=(3, 6)),),
            (0.4, 0.7), D((1, 2), near_misses=(1, 2)), 1,
            (("log_entry", 5), ("transaction", 1)),
        ),
        S(
            "grid_attack", "Coordinated attack on the power grid", "modern",
            "Substations are shot up and tripped one after another along a line: telemetry drops in node "
            "order under a drifting load trend.",
            MIN, 360,
            (_g("substation_n", 5, 6, 12), _g("substation_s", 5, 6, 12), _g("substation_e", 5, 6, 12),
             _g("substation_w", 5, 6, 12), _g("sensors", 3, 0.5, 2)),
            Se("drift", 0.3), 30.0,
            (I(("substation_n", "substation_e", "substation_s", "sensors"), (5, 10), "drop", (0.85, 0.99), (60, 180),
               horizon=15, stagger=(5, 25), ordered=True, lead=(30, 90),
               indicators=("drone_sighting", "perimeter_breach", "gunfire_report", "breaker_open"),
               group_shapes=(("sensors", "burst"),), override_magnitude=(4, 8)),),
            (0.4, 0.75), D((1, 3), near_misses=(1, 2)), 1,
            (("telemetry", 6), ("sensor_reading", 1)),
        ),
        S(
            "supply_chain_compromise", "Malicious open-source package", "modern",
            "A backdoored package is published and pulled by CI pipelines: build anomalies and beaconing ramp "
            "through pipelines, production and endpoints over days, in node order, during working hours.",
            15 * MIN, 384,
            (_g("registry", 3, 0.5, 2), _g("ci", 6), _g("prod", 8), _g("endpoints", 8, 0.5, 2)),
            Se("business", 0.3), 5.0,
            (I(("ci", "prod", "endpoints"), (6, 12), "ramp", (1.5, 3), (60, 150), horizon=48, stagger=(8, 48),
               ordered=True, ramp=(8, 30), lead=(24, 96),
               indicators=("maintainer_takeover", "package_publish", "build_anomaly", "c2_beacon")),),
            (0.4, 0.7), D((1, 3), near_misses=(1, 2)), 1,
            (("log_entry", 3), ("netflow", 2)),
        ),
        S(
            "deepfake_unrest", "Deepfake-driven unrest", "modern",
            "A fabricated video goes viral: social and news activity ramps (bot amplification) and street "
            "protests burst in one district; bursty social baselines make viral decoys common.",
            5 * MIN, 400,
            (_g("social_a", 5, 2, 6), _g("social_b", 5, 2, 6), _g("news", 4, 1, 3), _g("city_east", 5), _g("city_west", 5)),
            Se("daily", 0.5), 3.0,
            (I(("social_a", "social_b", "news", "city_east"), (6, 12), "ramp", (2, 5), (30, 100), horizon=36,
               stagger=(0, 30), ramp=(6, 24), lead=(6, 36),
               indicators=("deepfake_video", "bot_amplification", "rumor_spread", "protest_call"),
               group_shapes=(("city_east", "burst"),), override_magnitude=(3, 6)),),
            (0.35, 0.7), D((2, 5), near_misses=(1, 2)), 2,
            (("social_post", 5), ("news_item", 1), ("call", 1)),
        ),
        S(
            "gps_spoofing", "GPS spoofing of ports and shipping", "modern",
            "A spoofer near a port: AIS positions jump and drift, so vessel reports become erratic (variance "
            "change) in port, anchorage and lane, under a tidal cycle.",
            MIN, 360,
            (_g("port", 6, 2, 5), _g("anchorage", 5, 2, 5), _g("shipping_lane", 6, 2, 5), _g("airport", 4, 1, 3)),
            Se("semidiurnal", 0.3), None,
            (I(("port", "anchorage", "shipping_lane"), (4, 9), "variance", (1.2, 2.5), (30, 90), horizon=20,
               stagger=(0, 5), lead=(5, 20), indicators=("gps_drift", "ais_anomaly", "gps_jump")),),
            (0.4, 0.75), D((1, 3), near_misses=(1, 2)), 2,
            (("ais_position", 6), ("telemetry", 1)),
        ),
        S(
            "ai_bio_design", "AI-assisted biological agent design", "modern",
            "Model queries, DNA synthesis orders and equipment purchases over a week precede a release: "
            "sparse procurement signals, then health nodes ramp slowly and with wide stagger.",
            HOUR, 480,
            (_g("online", 4, 0.3, 2), _g("procurement", 4, 0.3, 2), _g("labs", 4, 0.3, 2), _g("wmd", 4, 0.3, 2), _g("health", 6, 1, 3)),
            Se("weekly", 0.3), 4.0,
            (I(("procurement", "labs", "wmd", "health"), (4, 8), "ramp", (1.5, 3), (100, 200), horizon=72,
               stagger=(12, 48), ramp=(24, 72), lead=(72, 150),
               indicators=("model_query", "dna_synthesis_order", "equipment_purchase", "bio_detect", "syndromic_spike")),),
            (0.35, 0.6), D((1, 2), near_misses=(1, 2)), 1,
            (("report", 2), ("transaction", 2), ("patient_visit", 2)),
        ),
        # ---- 19 real-world cases ---------------------------------------
        S(
            "mumbai_2008", "Mumbai attacks, November 2008", "real",
            "Ten attackers land by boat and hit five sites within about an hour: long sieges (steps) that "
            "start at random offsets across the sites.",
            MIN, 540,
            (_g("cst_station", 4, 1, 3), _g("leopold_cafe", 3, 1, 3), _g("taj_hotel", 5, 1, 3), _g("oberoi_hotel", 4, 1, 3),
             _g("nariman_house", 3, 1, 3), _g("coast_guard", 3, 0.3, 1), _g("media", 4, 2, 5)),
            Se("daily", 0.35), 5.0,
            (I(("cst_station", "leopold_cafe", "taj_hotel", "oberoi_hotel", "nariman_house"), (8, 14), "step",
               (1.5, 3.5), (120, 240), horizon=30, stagger=(20, 60), lead=(30, 90),
               indicators=("boat_landing", "vehicle_anomaly", "gunfire_report", "hostage_report")),),
            (0.3, 0.55), D((1, 3), near_misses=(0, 2)), 2,
            (("call", 3), ("report", 1), ("social_post", 2)),
        ),
        S(
            "beslan_2004", "Beslan school siege, September 2004", "real",
            "A school is seized (a step that lasts days) and, about 52 hours later, the siege ends in "
            "explosions and an assault (a burst): two incidents of different shapes on 15-minute ticks.",
            15 * MIN, 288,
            (_g("school", 5, 0.5, 3), _g("security", 5, 0.5, 3), _g("town", 4, 0.5, 3), _g("media", 5, 0.5, 3)),
            Se("daily", 0.45), 6.0,
            (I(("school", "security", "town"), (4, 8), "step", (2, 4), (150, 200), horizon=8, lead=(4, 16),
               indicators=("vehicle_anomaly", "weapon_sighting", "hostage_report")),
             I(("school", "security", "media"), (4, 8), "burst", (5, 10), (2, 6), horizon=8, lead=(0, 2),
               indicators=("explosion", "gunfire_report"), after=(200, 212))),
            (0.16, 0.23), D((1, 2), near_misses=(0, 1)), 2,
            (("report", 2), ("call", 1), ("news_item", 1)),
        ),
        S(
            "london_7_7", "London bombings, 7 July 2005", "real",
            "Three near-simultaneous Underground bombs, then a bus bomb an hour later: two burst incidents in "
            "different groups, at rush hour.",
            MIN, 300,
            (_g("circle_line", 4), _g("piccadilly_line", 4), _g("tavistock_sq", 3), _g("ems", 5), _g("media", 4, 2, 6)),
            Se("commute", 0.6), 6.0,
            (I(("circle_line", "piccadilly_line", "ems"), (5, 9), "burst", (5, 9), (3, 8), horizon=15, stagger=(0, 1),
               lead=(30, 80), indicators=("travel_anomaly", "cctv_alert", "explosion")),
             I(("tavistock_sq", "ems"), (3, 4), "burst", (5, 9), (3, 6), horizon=15, lead=(0, 2),
               indicators=("cctv_alert", "explosion"), after=(55, 60))),
            (0.3, 0.45), D((1, 3), near_misses=(0, 2)), 2,
            (("call", 3), ("sensor_reading", 1), ("social_post", 1)),
        ),
        S(
            "madrid_2004", "Madrid train bombings, 11 March 2004", "real",
            "Ten bombs on four commuter trains within three minutes: one incident with many nodes bursting "
            "together; unexploded devices show up as near misses.",
            MIN, 240,
            (_g("el_pozo", 3), _g("santa_eugenia", 3), _g("atocha", 4), _g("tellez", 3), _g("ems", 5), _g("media", 4, 2, 6)),
            Se("commute", 0.6), 5.0,
            (I(("el_pozo", "santa_eugenia", "atocha", "tellez"), (8, 12), "burst", (6, 10), (2, 5), horizon=8,
               stagger=(0, 3), lead=(0, 3), indicators=("suspicious_package", "explosion", "explosion")),),
            (0.35, 0.7), D((1, 2), near_misses=(2, 3)), 2,
            (("call", 3), ("sensor_reading", 1)),
        ),
        S(
            "notpetya_2017", "NotPetya, June 2017", "real",
            "A poisoned accounting-software update releases a wiper that spreads from Ukraine to firms "
            "worldwide: telemetry drops node after node across time zones.",
            MIN, 360,
            (_g("ukraine", 8, 5, 10), _g("europe", 6, 5, 10), _g("us", 5, 5, 10), _g("asia", 5, 5, 10)),
            Se("business", 0.3, zone_spread_h=14.0), 20.0,
            (I(("ukraine", "europe", "us", "asia"), (10, 18), "drop", (0.85, 0.99), (120, 200), horizon=20,
               stagger=(5, 60), ordered=True, lead=(60, 150),
               indicators=("update_push", "credential_theft", "smb_exploit", "mbr_overwrite")),),
            (0.45, 0.7), D((1, 3), near_misses=(0, 2)), 2,
            (("log_entry", 3), ("netflow", 2)),
        ),
        S(
            "wannacry_2017", "WannaCry, May 2017", "real",
            "A worm scans and encrypts worldwide: SMB scanning ramps region by region at random offsets over "
            "two hours until the kill switch; low per-node rates across six regions.",
            MIN, 480,
            (_g("europe", 5, 0.5, 2), _g("russia", 5, 0.5, 2), _g("asia", 5, 0.5, 2), _g("americas", 5, 0.5, 2),
             _g("mideast", 5, 0.5, 2), _g("africa", 5, 0.5, 2)),
            Se("business", 0.3, zone_spread_h=16.0), 4.0,
            (I(("europe", "russia", "asia", "americas", "mideast", "africa"), (8, 16), "ramp", (3, 6), (60, 150),
               horizon=45, stagger=(0, 120), ramp=(10, 40), lead=(5, 20),
               indicators=("smb_scan", "smb_exploit", "ransom_note")),),
            (0.35, 0.6), D((1, 3), near_misses=(1, 2)), 1,
            (("netflow", 3), ("log_entry", 1)),
        ),
        S(
            "volt_typhoon", "Volt Typhoon pre-positioning", "real",
            "Living-off-the-land intrusion into critical infrastructure: a few nodes become subtly erratic "
            "(small variance change) over weeks, with wide stagger and a long lead; hard by design.",
            HOUR, 480,
            (_g("water", 5, 0.5, 2), _g("energy", 5, 0.5, 2), _g("telecom", 5, 0.5, 2), _g("transport", 5, 0.5, 2)),
            Se("weekly", 0.3), 5.0,
            (I(("water", "energy", "telecom", "transport"), (3, 6), "variance", (0.8, 1.4), (150, 300), horizon=120,
               stagger=(24, 120), lead=(48, 120),
               indicators=("soho_router_compromise", "vpn_login", "credential_theft", "lateral_movement")),),
            (0.3, 0.5), D((1, 3), near_misses=(1, 2)), 1,
            (("log_entry", 3), ("netflow", 3)),
        ),
        S(
            "solarwinds_2020", "SolarWinds supply-chain compromise", "real",
            "A trojanised update sits dormant for days, then beacons: a small, long step across agencies and "
            "contractors after the longest indicator lead in the catalog.",
            HOUR, 400,
            (_g("agencies", 8), _g("contractors", 6), _g("tech", 6)),
            Se("weekly", 0.3), 6.0,
            (I(("agencies", "contractors", "tech"), (5, 12), "step", (0.8, 1.6), (150, 250), horizon=96,
               stagger=(0, 48), lead=(120, 160),
               indicators=("code_signing_anomaly", "update_push", "dns_anomaly", "c2_beacon", "token_forgery")),),
            (0.42, 0.6), D((1, 2), near_misses=(1, 2)), 2,
            (("log_entry", 2), ("netflow", 3)),
        ),
        S(
            "colonial_pipeline_2021", "Colonial Pipeline ransomware, May 2021", "real",
            "Ransomware on the IT network leads to a precautionary pipeline shutdown: OT activity drops, then "
            "fuel-retail shortages and media coverage ramp up, in that order.",
            5 * MIN, 432,
            (_g("it_network", 5, 4, 9), _g("ot_pipeline", 6, 5, 10), _g("fuel_retail", 6), _g("media", 4, 1, 4)),
            Se("daily", 0.4), 15.0,
            (I(("it_network", "ot_pipeline", "fuel_retail", "media"), (6, 12), "drop", (0.7, 0.95), (100, 200),
               horizon=24, stagger=(0, 36), ordered=True, ramp=(12, 36), lead=(48, 110),
               indicators=("vpn_login", "exfiltration", "mass_file_rename", "ransom_note", "shutdown_order"),
               group_shapes=(("fuel_retail", "ramp"), ("media", "ramp")), override_magnitude=(2, 4)),),
            (0.4, 0.7), D((1, 2), near_misses=(0, 2)), 2,
            (("telemetry", 3), ("transaction", 2), ("news_item", 1)),
        ),
        S(
            "boston_marathon_2013", "Boston Marathon bombing, April 2013", "real",
            "Two bombs near the finish line while the crowd is at its peak: a burst right after the crowd "
            "hump, which itself lifts the finish-line and media baselines.",
            MIN, 360,
            (_g("finish_line", 5), _g("course", 5), _g("ems", 4), _g("police", 4), _g("media", 4, 2, 6)),
            Se("event", 0.8, event_groups=("finish_line", "course", "media"), event_width=60), 6.0,
            (I(("finish_line", "ems", "police"), (4, 8), "burst", (5, 10), (2, 6), horizon=10, stagger=(0, 1),
               lead=(5, 25), indicators=("cctv_alert", "suspicious_package", "explosion", "explosion"),
               anchor="event", anchor_offset=(10, 40)),),
            (0.35, 0.6), D((1, 3), near_misses=(0, 2)), 2,
            (("call", 2), ("social_post", 2), ("report", 1)),
        ),
        S(
            "paris_2015", "Paris attacks, 13 November 2015", "real",
            "Stadium suicide bombings, café shootings ten minutes later and the Bataclan siege fifteen minutes "
            "after that: three incidents in different groups, burst then two steps.",
            MIN, 300,
            (_g("stade_de_france", 4), _g("cafes_10th", 5), _g("cafes_11th", 4), _g("bataclan", 4), _g("ems", 4),
             _g("media", 4, 2, 6)),
            Se("daily", 0.3), 5.0,
            (I(("stade_de_france", "ems"), (3, 4), "burst", (5, 9), (2, 5), horizon=10, lead=(10, 30),
               indicators=("vehicle_anomaly", "explosion")),
             I(("cafes_10th", "cafes_11th", "ems"), (4, 7), "step", (3, 6), (10, 20), horizon=10, stagger=(0, 12),
               ordered=True, lead=(0, 2), indicators=("gunfire_report",), after=(8, 12)),
             I(("bataclan", "ems", "media"), (4, 7), "step", (2, 4), (120, 160), horizon=15, lead=(0, 2),
               indicators=("gunfire_report", "hostage_report"), after=(14, 18))),
            (0.35, 0.5), D((1, 3), near_misses=(0, 2)), 2,
            (("call", 3), ("social_post", 2)),
        ),
        S(
            "christchurch_2019", "Christchurch mosque shootings, March 2019", "real",
            "A manifesto and a livestream precede shootings at two mosques 15 minutes apart: physical nodes "
            "burst in order while social media ramps as the stream spreads.",
            MIN, 240,
            (_g("al_noor", 4), _g("linwood", 4), _g("police", 4), _g("social_media", 6, 2, 6)),
            Se("daily", 0.3), 4.0,
            (I(("al_noor", "linwood", "police", "social_media"), (6, 10), "burst", (4, 8), (3, 8), horizon=15,
               stagger=(12, 18), ordered=True, lead=(8, 15),
               indicators=("manifesto_post", "livestream_start", "gunfire_report"),
               group_shapes=(("social_media", "ramp"),), override_magnitude=(2, 5)),),
            (0.4, 0.8), D((1, 3), near_misses=(0, 2)), 2,
            (("social_post", 3), ("call", 2)),
        ),
        S(
            "oklahoma_city_1995", "Oklahoma City bombing, April 1995", "real",
            "Fertiliser purchases and a truck rental days ahead, then one truck bomb: a single-tick burst in "
            "downtown nodes on 15-minute ticks.",
            15 * MIN, 384,
            (_g("downtown", 6, 0.5, 3), _g("federal_bldg", 3, 0.5, 3), _g("ems", 4, 0.5, 3), _g("media", 3, 0.5, 3),
             _g("rural", 3, 0.5, 3)),
            Se("daily", 0.45), 6.0,
            (I(("downtown", "federal_bldg", "ems"), (5, 10), "burst", (6, 10), (1, 3), horizon=4, stagger=(0, 1),
               lead=(96, 200), indicators=("chemical_purchase", "vehicle_rental", "recon", "explosion")),),
            (0.55, 0.8), D((2, 4), near_misses=(0, 2)), 1,
            (("call", 2), ("report", 2)),
        ),
        S(
            "tokyo_sarin_1995", "Tokyo subway sarin attack, March 1995", "real",
            "Sarin on five trains of three lines at rush hour: casualties accumulate station by station "
            "(ordered ramp) with almost no warning; Poisson counts.",
            MIN, 240,
            (_g("marunouchi", 5), _g("hibiya", 6), _g("chiyoda", 4), _g("ems", 4), _g("hospital", 3)),
            Se("commute", 0.7), None,
            (I(("marunouchi", "hibiya", "chiyoda", "ems", "hospital"), (8, 15), "ramp", (3, 6), (60, 120), horizon=20,
               stagger=(0, 25), ordered=True, ramp=(5, 20), lead=(0, 4),
               indicators=("odor_complaint", "respiratory_call", "mass_casualty")),),
            (0.35, 0.75), D((1, 2), near_misses=(0, 2)), 1,
            (("call", 3), ("sensor_reading", 2)),
        ),
        S(
            "anthrax_letters_2001", "Anthrax letters, 2001", "real",
            "Two waves of letters three weeks apart: sparse, very over-dispersed counts in postal, media, "
            "government and health nodes ramp after each wave, on 6-hour ticks over three months.",
            6 * HOUR, 360,
            (_g("postal", 5, 0.2, 1), _g("media_offices", 4, 0.2, 1), _g("government", 4, 0.2, 1), _g("health", 5, 0.3, 1)),
            Se("weekly", 0.3), 2.0,
            (I(("media_offices", "postal", "health"), (3, 6), "ramp", (3, 6), (40, 80), horizon=28, stagger=(0, 16),
               ramp=(8, 20), lead=(8, 20), indicators=("suspicious_letter", "powder_report", "lab_confirmation")),
             I(("government", "postal", "health"), (3, 6), "ramp", (3, 6), (40, 80), horizon=28, stagger=(0, 16),
               ramp=(8, 20), lead=(4, 12), indicators=("suspicious_letter", "powder_report", "lab_confirmation"),
               after=(80, 88))),
            (0.3, 0.45), D((1, 2), near_misses=(1, 2)), 1,
            (("report", 2), ("lab_result", 1)),
        ),
        S(
            "stuxnet", "Stuxnet", "real",
            "Malware carried in on USB rewrites PLC logic: centrifuge cascades oscillate (variance change) "
            "for weeks while engineering workstations step up; 24/7 industrial telemetry.",
            HOUR, 480,
            (_g("cascade_a", 6, 2, 5), _g("cascade_b", 6, 2, 5), _g("cascade_c", 6, 2, 5), _g("engineering", 4, 0.5, 2)),
            Se("none"), None,
            (I(("cascade_a", "cascade_b", "cascade_c", "engineering"), (6, 12), "variance", (1.5, 2.5), (100, 250),
               horizon=48, stagger=(0, 72), lead=(72, 160),
               indicators=("usb_insertion", "plc_write", "firmware_update"),
               group_shapes=(("engineering", "step"),), override_magnitude=(1.5, 3)),),
            (0.35, 0.6), D((1, 2), near_misses=(1, 2)), 1,
            (("telemetry", 5), ("log_entry", 1)),
        ),
        S(
            "ukraine_grid_2015", "Ukraine power grid attack, December 2015", "real",
            "Operators' own tools open breakers at three distribution companies within 30 minutes: substation "
            "telemetry drops while a telephone denial of service steps up call-centre load.",
            MIN, 360,
            (_g("prykarpattia", 6, 6, 12), _g("kyivoblenergo", 6, 6, 12), _g("chernivtsi", 5, 6, 12), _g("call_centers", 4, 1, 3)),
            Se("daily", 0.2), None,
            (I(("prykarpattia", "kyivoblenergo", "chernivtsi", "call_centers"), (8, 14), "drop", (0.85, 0.99), (60, 180),
               horizon=15, stagger=(0, 30), lead=(90, 150),
               indicators=("phishing", "vpn_login", "ics_command", "breaker_open", "firmware_wipe"),
               group_shapes=(("call_centers", "step"),), override_magnitude=(3, 6)),),
            (0.45, 0.7), D((1, 3), near_misses=(1, 2)), 2,
            (("telemetry", 6), ("call", 1)),
        ),
        S(
            "nice_2016", "Nice truck attack, 14 July 2016", "real",
            "A truck drives two kilometres along the promenade into the fireworks crowd: bursts in segment "
            "order over a few minutes, just after the crowd hump.",
            MIN, 240,
            (_g("promenade_west", 4), _g("promenade_centre", 4), _g("promenade_east", 4), _g("ems", 4), _g("media", 4, 2, 6)),
            Se("event", 0.8, event_groups=("promenade_west", "promenade_centre", "promenade_east"), event_width=30), 5.0,
            (I(("promenade_west", "promenade_centre", "promenade_east", "ems"), (6, 10), "burst", (5, 9), (2, 5),
               horizon=10, stagger=(3, 6), ordered=True, lead=(20, 60),
               indicators=("recon", "vehicle_rental", "vehicle_anomaly"), anchor="event", anchor_offset=(0, 20)),),
            (0.4, 0.7), D((1, 3), near_misses=(0, 2)), 2,
            (("call", 2), ("social_post", 2)),
        ),
        S(
            "manchester_arena_2017", "Manchester Arena bombing, May 2017", "real",
            "A suicide bomb in the foyer as a concert lets out: a burst at the peak of the egress hump, after "
            "weeks of reconnaissance and purchases.",
            MIN, 300,
            (_g("arena", 5), _g("foyer", 3), _g("victoria_station", 4), _g("ems", 4), _g("media", 4, 2, 6)),
            Se("event", 0.7, event_groups=("arena", "foyer", "victoria_station"), event_width=25), 5.0,
            (I(("foyer", "arena", "ems", "victoria_station"), (4, 8), "burst", (5, 10), (2, 5), horizon=10,
               stagger=(0, 2), lead=(30, 90), indicators=("recon", "chemical_purchase", "suspicious_package", "explosion"),
               anchor="event", anchor_offset=(-5, 5)),),
            (0.4, 0.7), D((1, 3), near_misses=(0, 2)), 2,
            (("call", 2), ("social_post", 2), ("sensor_reading", 1)),
        ),
    ]
    out = {}
    for sc in scenarios:
        if sc.name in out:
            raise ValueError(f"duplicate scenario name {sc.name!r}")
        out[sc.name] = sc
    return out


#: name -> Scenario: 15 DHS planning scenarios, 7 modernised, 19 real cases.
SCENARIOS: dict = _catalog()
