"""The tuning panel: ipywidgets bound to one trace and config; every change re-replays.

Headroom, policy, pins, GPU count and sizes, and health events during the trace are the knobs;
the panel shows the summary against the starting configuration and the charts of
``present.charts``. What it shows is also kept as plain attributes (``summary``, ``delta``,
``summary_table``, ``chart_data``, ``result``) so code and tests can read exactly what the
analyst sees. Outputs are replaced with ``outputs = ()`` + ``append_display_data``, which works
both in a kernel (notebook, Voila) and outside one (tests).
"""

from __future__ import annotations

import html
import time
import warnings
from datetime import datetime, timezone

import ipywidgets as W
import polars as pl
from IPython.display import SVG

from ..model.cluster import ConfigError, Gpu, HealthChange
from ..model.dtypes import HEALTH_NAMES, POLICY_NAMES
from ..model.sizes import SizeError, parse_size
from ..replay import CHUNK, replay
from ..analysis.occupancy import residency
from . import charts as C

GB, GiB = 10**9, 2**30
#: Headroom slider step: 0.1 GB.
HEADROOM_STEP = 100_000_000
#: Rows of the summary table: (key in ``ReplayResult.summary()``, label).
METRICS = [
    ("requests", "requests"),
    ("routed", "routed (hits)"),
    ("loads", "cold starts"),
    ("evictions", "evictions"),
    ("rejected", "rejected"),
    ("bytes_loaded", "bytes loaded"),
]

#: Chart tabs: (key in ``chart_data``/``charts``, tab title).
CHART_TABS = [
    ("decisions", "decisions"),
    ("occupancy", "VRAM per GPU"),
    ("compare", "vs start"),
    ("churn", "cold starts per model"),
    ("evictions", "who evicted whom"),
]


def size_text(b: int) -> str:
    """A size as the shortest exact text ``parse_size`` reads back (``24GiB``, ``16GB``, bytes)."""
    for unit, name in ((2**40, "TiB"), (10**12, "TB"), (GiB, "GiB"), (GB, "GB"), (2**20, "MiB"),
                       (10**6, "MB")):  # fmt: skip
        if b and b % unit == 0:
            return f"{b // unit}{name}"
    return str(b)


def gb_gib(b: int) -> str:
    return f"{b / GB:.2f} GB = {b / GiB:.2f} GiB"


def iso(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str, what: str) -> int:
    from .cli_replay import parse_time_ms

    return parse_time_ms(text.strip(), what)


class TuningPanel:
    """``TuningPanel(trace, config, gpus)``: display it (or ``panel.widget``) in a notebook."""

    def __init__(self, trace, config, gpus, events=(), *, charts: bool = True, top: int = 8):
        self.trace = trace
        self.config = config
        self.base_gpus = tuple(Gpu.of(g, k) for k, g in enumerate(gpus))
        self.base_events = tuple(events)
        self.show_charts = charts
        self.top = top
        self.health_events: list[tuple[int, int, int | None, str]] = []  # gpu, from, to, state
        self._hold = False
        self.timings: dict[str, float] = {}

        big = max(g.total for g in self.base_gpus)
        hmax = max(4 * GB, 2 * config.headroom, HEADROOM_STEP)
        hmax = min(-(-hmax // HEADROOM_STEP) * HEADROOM_STEP, max(big, config.headroom))
        self.headroom = W.IntSlider(
            value=config.headroom, min=0, max=hmax, step=HEADROOM_STEP, readout=False,
            continuous_update=False, description="headroom", layout=W.Layout(width="340px"),
        )  # fmt: skip
        self.headroom_label = W.HTML()
        self.policy = W.Dropdown(options=list(POLICY_NAMES), value=config.policy,
                                 description="policy")  # fmt: skip
        self.pins = W.SelectMultiple(
            options=sorted(config.model_ids), value=tuple(sorted(config.pins)), rows=6,
            description="pinned", layout=W.Layout(width="340px"),
        )  # fmt: skip
        self.gpu_count = W.BoundedIntText(value=len(self.base_gpus), min=1, max=8,
                                          description="GPUs", layout=W.Layout(width="160px"))
        self.gpu_sizes = W.Text(value=", ".join(size_text(g.total) for g in self.base_gpus),
                                description="sizes", layout=W.Layout(width="340px"))
        # Health-event editor.
        mid = int(trace.t_ms[len(trace) // 2]) if len(trace) else 0
        self.ev_gpu = W.Dropdown(options=list(range(len(self.base_gpus))), value=0,
                                 description="GPU", layout=W.Layout(width="160px"))
        self.ev_state = W.Dropdown(options=list(HEALTH_NAMES), value="Unhealthy",
                                   description="state", layout=W.Layout(width="200px"))
        self.ev_from = W.Text(value=iso(mid), description="from (UTC)")
        self.ev_to = W.Text(value="", placeholder="until the end", description="to (UTC)")
        self.ev_add = W.Button(description="add health event", icon="plus")
        self.ev_list = W.Select(options=[], rows=3, layout=W.Layout(width="340px"))
        self.ev_remove = W.Button(description="remove selected", icon="trash")
        # Outputs.
        self.status = W.HTML()
        self.summary_html = W.HTML()
        self.summary_html.add_class("concerto-summary")
        self.progress_out = W.Output()
        self.tabs = W.Tab(children=[W.Output() for _ in CHART_TABS])
        for k, (_, title) in enumerate(CHART_TABS):
            self.tabs.set_title(k, title)
        self.tabs.observe(self._show_tab, names="selected_index")

        for w in (self.headroom, self.policy, self.pins, self.gpu_sizes):
            w.observe(self.update, names="value")
        self.gpu_count.observe(self._count_changed, names="value")
        self.ev_add.on_click(self._add_event)
        self.ev_remove.on_click(self._remove_event)

        self.baseline = self._replay(self.settings())
        self.baseline_summary = self.baseline.summary()
        self.result = None
        self.update()

    # --- settings ------------------------------------------------------------------------------
    def _gpus(self) -> tuple[Gpu, ...]:
        parts = [p.strip() for p in self.gpu_sizes.value.split(",") if p.strip()]
        if not parts:
            raise ConfigError("sizes: give one GPU size per GPU, comma-separated (e.g. 24GiB, 24GiB)")
        out = []
        for k, p in enumerate(parts):
            total = parse_size(p, what=f"GPU {k} size")
            base = self.base_gpus[k] if k < len(self.base_gpus) else None
            out.append(base if base is not None and base.total == total else Gpu.of(total, k))
        return tuple(out)

    def events(self, n_gpus: int | None = None) -> list:
        """The base events plus one or two ``HealthChange`` per editor row."""
        out = list(self.base_events)
        for gpu, t0, t1, state in self.health_events:
            if n_gpus is not None and gpu >= n_gpus:
                raise ConfigError(f"health event on GPU {gpu}, but only {n_gpus} GPUs are set")
            out.append(HealthChange(t0, gpu, state))
            if t1 is not None:
                back = self.base_gpus[gpu].health if gpu < len(self.base_gpus) else "Healthy"
                out.append(HealthChange(t1, gpu, back))
        return out

    def settings(self) -> dict:
        """Keyword arguments of the ``replay`` call the panel makes (besides trace/config)."""
        gpus = self._gpus()
        return dict(
            gpus=gpus,
            policy=self.policy.value,
            headroom=int(self.headroom.value),
            pins=set(self.pins.value),
            events=self.events(len(gpus)),
        )

    # --- replay --------------------------------------------------------------------------------
    def _replay(self, s: dict):
        kw = {k: v for k, v in s.items() if k != "gpus"}
        long = len(self.trace) > CHUNK
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if long:
                self.progress_out.outputs = ()
                with self.progress_out:
                    r = replay(self.trace, self.config, s["gpus"], progress=True, **kw)
                self.progress_out.outputs = ()
            else:
                r = replay(self.trace, self.config, s["gpus"], progress=False, **kw)
        r.meta["warnings"] = [str(w.message) for w in caught]
        return r

    def update(self, *_):
        """Re-replay with the current widget values and refresh every output."""
        if self._hold:
            return
        self.headroom_label.value = f"<code>{gb_gib(int(self.headroom.value))}</code>"
        try:
            s = self.settings()
            t0 = time.perf_counter()
            result = self._replay(s)
        except (ConfigError, SizeError, ValueError) as e:
            self.status.value = f"<span style='color:#b00'>not replayed: {html.escape(str(e))}</span>"
            return
        t1 = time.perf_counter()
        self.result = result
        self.summary = result.summary()
        self.delta = {
            k: self.summary[k] - self.baseline_summary[k] for k, _ in METRICS
        }
        self.summary_table = pl.DataFrame(
            {
                "metric": [label for _, label in METRICS],
                "start": [self.baseline_summary[k] for k, _ in METRICS],
                "now": [self.summary[k] for k, _ in METRICS],
                "delta": [self.delta[k] for k, _ in METRICS],
            }
        )
        self.summary_html.value = self._summary_html()
        warn = result.meta.get("warnings") or []
        self.status.value = "<br>".join(
            [f"replayed {len(self.trace):,} requests in {1000 * (t1 - t0):.0f} ms"]
            + [f"<span style='color:#a60'>warning: {html.escape(w)}</span>" for w in warn]
        )
        if self.show_charts:
            self._draw()
        self.timings = {"replay_s": t1 - t0, "total_s": time.perf_counter() - t0}

    def _draw(self):
        """Aggregate every chart's data (cheap), then render only the chart tab on show."""
        r, b = self.result, self.baseline
        iv = residency(r)
        pair = {"start": b, "now": r}
        self.chart_data = {
            "decisions": C.decisions_data(r),
            "occupancy": C.occupancy_data(r, top=self.top, intervals=iv),
            "churn": C.churn_data(r),
            "evictions": C.evictions_matrix(r),
            "compare": C.compare_data(pair),
        }
        d = self.chart_data
        # Altair objects are built (and rendered) only for the tab on show: building all five
        # costs more than the replay itself.
        self._builders = {
            "decisions": lambda: C.decisions_chart(r, width=600, height=170, data=d["decisions"]),
            "occupancy": lambda: C.occupancy_chart(r, top=self.top, width=600, height=130,
                                                   data=d["occupancy"]),
            "churn": lambda: C.churn_chart(r, width=320, height=300, data=d["churn"]),
            "evictions": lambda: C.who_evicted_whom_chart(r, size=320, data=d["evictions"]),
            "compare": lambda: C.compare_chart(pair, width=300, height=160, data=d["compare"]),
        }  # fmt: skip
        self._stale = set(self._builders)
        self._show_tab()

    @property
    def charts(self) -> dict:
        """The Altair chart of every tab, for the current replay."""
        return {name: build() for name, build in self._builders.items()}

    @property
    def chart(self):
        """All charts of the current replay on one canvas (for ``charts.save_png``)."""
        c = self.charts
        return C.alt.vconcat(
            c["decisions"], c["occupancy"], c["compare"], C.alt.hconcat(c["churn"], c["evictions"])
        ).resolve_scale(color="independent")

    def _show_tab(self, *_):
        k = self.tabs.selected_index or 0
        name = CHART_TABS[k][0]
        if name in getattr(self, "_stale", ()):
            out = self.tabs.children[k]
            out.outputs = ()
            out.append_display_data(SVG(C.to_svg(self._builders[name]())))
            self._stale.discard(name)

    def _summary_html(self) -> str:
        def fmt(k, v, signed=False):
            if k == "bytes_loaded":
                return f"{v / 1e12:+,.2f} TB" if signed else f"{v / 1e12:,.2f} TB"
            return f"{v:+,}" if signed else f"{v:,}"

        rows = "".join(
            f"<tr><th style='text-align:left'>{label}</th>"
            f"<td class='start-{k}'>{fmt(k, self.baseline_summary[k])}</td>"
            f"<td class='now-{k}'><b>{fmt(k, self.summary[k])}</b></td>"
            f"<td class='delta-{k}'>{fmt(k, self.delta[k], True)}</td></tr>"
            for k, label in METRICS
        )
        s = self.summary
        gpus = " + ".join(size_text(g) for g in s["gpus"])
        head = (
            f"<div>policy <b>{s['policy']}</b>, headroom <b>{gb_gib(s['headroom_bytes'])}</b>, "
            f"GPUs {gpus}, pins: {html.escape(', '.join(s['pins']) or 'none')}, "
            f"health events: {len(self.health_events)}</div>"
        )
        return (
            head + "<table style='border-collapse:collapse' cellpadding='4'>"
            "<tr><th></th><th>start</th><th>now</th><th>delta</th></tr>" + rows + "</table>"
        )

    # --- editor callbacks ----------------------------------------------------------------------
    def _count_changed(self, change):
        n = int(change["new"])
        parts = [p.strip() for p in self.gpu_sizes.value.split(",") if p.strip()] or ["24GiB"]
        parts = (parts + [parts[-1]] * n)[:n]
        self._hold = True
        try:
            self.gpu_sizes.value = ", ".join(parts)
            self.ev_gpu.options = list(range(n))
        finally:
            self._hold = False
        self.update()

    def add_health_event(self, gpu: int, start: int | str, state: str, end: int | str | None = None):
        """Mark ``gpu`` as ``state`` from ``start`` (until ``end``, when it returns to its
        start-up health); times are epoch ms or ISO 8601 UTC."""
        t0 = start if isinstance(start, int) else _parse_time(start, "health event from")
        t1 = end if end is None or isinstance(end, int) else _parse_time(end, "health event to")
        if t1 is not None and t1 < t0:
            raise ConfigError("health event: 'to' is before 'from'")
        HealthChange(t0, gpu, state)  # validates the state name
        self.health_events.append((int(gpu), int(t0), t1, state))
        self._list_events()
        self.update()

    def _add_event(self, _=None):
        try:
            self.add_health_event(
                self.ev_gpu.value, self.ev_from.value, self.ev_state.value,
                self.ev_to.value.strip() or None,
            )  # fmt: skip
        except (ConfigError, ValueError) as e:
            self.status.value = f"<span style='color:#b00'>{html.escape(str(e))}</span>"

    def _remove_event(self, _=None):
        k = self.ev_list.index
        if k is not None and 0 <= k < len(self.health_events):
            del self.health_events[k]
            self._list_events()
            self.update()

    def _list_events(self):
        self.ev_list.options = [
            f"GPU {g} {state} from {iso(t0)}" + (f" to {iso(t1)}" if t1 is not None else "")
            for g, t0, t1, state in self.health_events
        ]

    # --- display -------------------------------------------------------------------------------
    @property
    def widget(self) -> W.Widget:
        if not hasattr(self, "_widget"):
            box = W.Layout(border="1px solid #ddd", padding="6px", margin="2px")
            controls = W.VBox(
                [
                    W.HTML("<b>Routing</b>"),
                    W.HBox([self.headroom, self.headroom_label]),
                    self.policy,
                    self.pins,
                    W.HTML("<b>GPUs</b>"),
                    self.gpu_count,
                    self.gpu_sizes,
                    W.HTML("<b>Health events</b>"),
                    W.HBox([self.ev_gpu, self.ev_state]),
                    self.ev_from,
                    self.ev_to,
                    W.HBox([self.ev_add, self.ev_remove]),
                    self.ev_list,
                ],
                layout=box,
            )
            right = W.VBox([self.summary_html, self.status, self.progress_out], layout=box)
            self._widget = W.VBox([W.HBox([controls, right]), self.tabs])
        return self._widget

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def tuning_panel(trace, config, gpus, events=(), **kwargs) -> TuningPanel:
    """Build the panel (display the return value in a notebook)."""
    return TuningPanel(trace, config, gpus, events, **kwargs)
