"""The station network at run time: clocks, sampling, faults, back-fill, state and shutdown.

Each station samples on its own clock: c(t) = t + skew + drift (t - start), with a skew of a
second or two and a drift of tens of ppm, and ticks when its clock reaches a multiple of the
interval plus its own phase; the reading's ``ts`` is the clock's value, the weather is that of
the true instant. The stations due in a loop turn are sampled together (one vectorised weather
call), which is what lets one process carry a thousand stations.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from firmware_sim.diagnostics import diagnostics
from firmware_sim.faults import VALUE_KINDS, FaultLog, FaultPlan, apply_value_fault
from firmware_sim.link import Network, StationLink
from firmware_sim.noise import normal, uniform
from firmware_sim.readings import DECIMALS, NS_PER_S, Simulator, rounded_columns
from firmware_sim.state import SEQ_RESERVE, SpooledItem, StateStore, StationStateIn
from firmware_sim.weather import WeatherModel
from sensors.catalog import PARAMETER_IDS
from sensors.models import MAX_READINGS_PER_MESSAGE, format_ts
from sensors.registry import Station
from sensors.settings import Settings

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
FIRMWARE_VERSION: Final = "meltemi-sim/0.1.0"
STATE_SAVE_EVERY_S: Final = 5.0
HOUSEKEEPING_EVERY_S: Final = 1.0
PROGRESS_EVERY_S: Final = 0.5
_S_SKEW, _S_DRIFT, _S_PHASE = 300, 301, 302
_ALL_PARAMETERS: Final = tuple(sorted(PARAMETER_IDS))


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How ``meltemi simulate`` runs (see firmware_sim.cli for each flag)."""

    interval_s: float = 10.0
    seed: int = 0
    speed: float = 1.0
    start_s: float | None = None  # simulated start; default now
    backfill_s: float = 0.0
    backfill_interval_s: float = 60.0
    duration_s: float | None = None
    buffer_size: int = 2880
    keepalive_s: int = 60
    max_backoff_s: float = 30.0
    flush_timeout_s: float = 10.0
    firmware: str = FIRMWARE_VERSION
    fault_log: Path | None = None
    progress: bool = True


class StationNetwork:
    """Simulated stations publishing to one broker, from one thread."""

    def __init__(
        self,
        stations: Sequence[Station],
        settings: Settings,
        options: RunOptions,
        plan: FaultPlan | None = None,
    ) -> None:
        self.stations = list(stations)
        self.options = options
        self.plan = plan or FaultPlan()
        self.model = WeatherModel(self.stations, options.seed)
        self.store = StateStore(settings.data_dir / "sim")
        self.fault_log = FaultLog(options.fault_log or settings.data_dir / "sim" / "faults.jsonl")
        self.net = Network(
            settings, options.firmware, options.keepalive_s, options.max_backoff_s, options.seed
        )
        self.stop_event = threading.Event()
        n = len(self.stations)
        keys = np.arange(n)
        seed = options.seed
        self.skew_s = 1.0 * normal(seed, _S_SKEW, keys)
        self.drift = 30e-6 * normal(seed, _S_DRIFT, keys)
        self.phase_s = np.floor(uniform(seed, _S_PHASE, keys) * options.interval_s)
        self.faulty = {k for k, s in enumerate(self.stations) if s.id in self.plan.stations}
        self.history_total = [0] * n
        self.started = False

    # ---- clocks ------------------------------------------------------------------------

    def _true_time(self, idx: npt.NDArray[np.int64], clock: FloatArray) -> FloatArray:
        return np.asarray(
            (clock - self.skew_s[idx] + self.drift[idx] * self.t0) / (1.0 + self.drift[idx]),
            dtype=np.float64,
        )

    def sim_now(self) -> float:
        """Return the simulated time now."""
        return self.t0 + self.options.speed * (time.monotonic() - self.m0)

    # ---- set-up ------------------------------------------------------------------------

    def _prepare(self) -> None:
        options = self.options
        self.m0 = time.monotonic()
        self.t0 = options.start_s if options.start_s is not None else time.time()
        n = len(self.stations)
        idx = np.arange(n)
        clock0 = self.t0 + self.skew_s
        interval = options.interval_s
        self.next_clock = (np.floor((clock0 - self.phase_s) / interval) + 1) * interval
        self.next_clock += self.phase_s
        self.next_true = self._true_time(idx, self.next_clock)
        self.prev_true = self.next_true - interval
        self.boot = np.full(n, self.t0)
        saved = self.store.load()
        self.next_seq = [0] * n
        self.last_ts_ns: list[int | None] = [None] * n
        library = Simulator(self.stations, options.seed)
        library.model = self.model
        for k, station in enumerate(self.stations):
            entry = saved.get(station.id, StationStateIn())
            self.next_seq[k] = entry.next_seq
            self.last_ts_ns[k] = entry.last_ts_ns
            link = StationLink(self.net, station.id, options.buffer_size)
            spooled = self.store.take_spool(station.id)
            for start in range(0, len(spooled), MAX_READINGS_PER_MESSAGE):
                link.retry.append(spooled[start : start + MAX_READINGS_PER_MESSAGE])
            if spooled:
                self.next_seq[k] = max(self.next_seq[k], spooled[-1].seq + 1)
            if options.backfill_s > 0:
                link.history = self._history(k, library)
            self.net.links.append(link)
        self.reserved = [seq + SEQ_RESERVE for seq in self.next_seq]
        self._save_state(exact=False)

    def _history(self, k: int, library: Simulator) -> Iterator[list[SpooledItem]] | None:
        """Reserve seq numbers for the back-fill of station k and return its chunk generator."""
        options = self.options
        step = options.backfill_interval_s
        begin = self.t0 - options.backfill_s
        last = self.last_ts_ns[k]
        if last is not None:
            begin = max(begin, last / NS_PER_S + step)
        first = math.ceil(begin / step) * step
        count = max(0, math.ceil((self.t0 - first) / step))
        if count == 0:
            return None
        first_seq = self.next_seq[k]
        self.next_seq[k] += count
        self.history_total[k] = count
        self.last_ts_ns[k] = round((first + (count - 1) * step) * NS_PER_S)
        station_id = self.stations[k].id

        def chunks() -> Iterator[list[SpooledItem]]:
            for offset in range(0, count, MAX_READINGS_PER_MESSAGE):
                n = min(MAX_READINGS_PER_MESSAGE, count - offset)
                start = first + offset * step
                readings = library.readings(
                    station_id, start, start + (n - 0.5) * step, step, first_seq + offset, first
                )
                yield [
                    SpooledItem(
                        r["seq"],
                        round((start + j * step) * NS_PER_S),
                        json.dumps(r, separators=(",", ":")),
                    )
                    for j, r in enumerate(readings)
                ]

        return chunks()

    # ---- sampling ----------------------------------------------------------------------

    def _sample_due(self, now: float) -> None:
        due = np.nonzero(self.next_true <= now)[0]
        while due.size:
            self._sample(due)
            due = np.nonzero(self.next_true <= now)[0]

    def _sample(self, idx: npt.NDArray[np.int64]) -> None:
        true_t = self.next_true[idx]
        clock = self.next_clock[idx]
        weather = self.model.sample(idx, true_t, self.prev_true[idx])
        diag = diagnostics(self.model, idx, true_t, weather, self.boot[idx])
        columns = rounded_columns(weather, _ALL_PARAMETERS)
        links = self.net.links
        for row, k in enumerate(idx.tolist()):
            link = links[k]
            if link.silent:
                continue
            station = self.stations[k]
            values = {p: columns[p][row] for p in station.parameters}
            ts_ns = round(float(clock[row]) * NS_PER_S)
            seq = self.next_seq[k]
            self.next_seq[k] = seq + 1
            self.last_ts_ns[k] = ts_ns
            reading: dict[str, object] = {
                "ts": "",
                "seq": seq,
                "values": values,
                "diag": {key: column[row] for key, column in diag.items()},
            }
            alone = False
            if k in self.faulty:
                keep, alone, ts_ns = self._inject(k, float(true_t[row]), ts_ns, seq, values)
                if not keep:
                    continue
            reading["ts"] = format_ts(ts_ns)
            text = json.dumps(reading, separators=(",", ":"))
            if alone:
                text = text[: len(text) // 2]
            link.enqueue(SpooledItem(seq, ts_ns, text, alone))
        self.prev_true[idx] = true_t
        self.next_clock[idx] = clock + self.options.interval_s
        self.next_true[idx] = self._true_time(idx, self.next_clock[idx])

    def _inject(
        self, k: int, true_t: float, ts_ns: int, seq: int, values: dict[str, float]
    ) -> tuple[bool, bool, int]:
        """Apply station k's active faults to one reading; return (keep, alone, ts_ns)."""
        station_id = self.stations[k].id
        elapsed = true_t - self.t0
        keep, alone = True, False
        for fault in self.plan.for_station(station_id):
            if fault.kind == "silent" or not fault.active(elapsed):
                continue
            fault.fired = True
            detail = ""
            if fault.kind in VALUE_KINDS:
                assert fault.parameter is not None
                before = values[fault.parameter]
                after = apply_value_fault(fault, before, elapsed)
                if math.isfinite(after):
                    after = round(after, DECIMALS[fault.parameter])
                values[fault.parameter] = after
                detail = f"{before} -> {values[fault.parameter]}"
            elif fault.kind == "dropout":
                keep = False
            elif fault.kind == "malformed_json":
                alone = True
            elif fault.kind == "clock_offset":
                ts_ns += round(fault.magnitude * 3600 * NS_PER_S)
                detail = f"{fault.magnitude:+g} h"
            self.fault_log.record(station_id, fault.kind, ts_ns, seq, fault.parameter, detail)
        return keep, alone, ts_ns

    def _silences(self, now: float) -> None:
        elapsed = now - self.t0
        for k in self.faulty:
            link = self.net.links[k]
            station_id = self.stations[k].id
            for fault in self.plan.for_station(station_id):
                if fault.kind != "silent":
                    continue
                inside = fault.start_s <= elapsed < fault.start_s + max(fault.duration_s, 1.0)
                ts_ns = round(now * NS_PER_S)
                if inside and not link.silent and not fault.fired:
                    fault.fired = True
                    link.go_silent()
                    self.fault_log.record(station_id, "silent", ts_ns, None, None, "hang begins")
                elif not inside and link.silent and fault.fired:
                    self.fault_log.record(station_id, "silent", ts_ns, None, None, "reboot")
                    self.boot[k] = now
                    link.reboot()

    # ---- state -------------------------------------------------------------------------

    def _save_state(self, exact: bool) -> None:
        seqs = self.next_seq if exact else self.reserved
        self.store.save(
            {
                station.id: StationStateIn(next_seq=seqs[k], last_ts_ns=self.last_ts_ns[k])
                for k, station in enumerate(self.stations)
            }
        )

    def _reserve(self) -> bool:
        grew = False
        for k, seq in enumerate(self.next_seq):
            if seq >= self.reserved[k]:
                self.reserved[k] = seq + SEQ_RESERVE
                grew = True
        return grew

    # ---- the loop ----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to stop (thread-safe; also what SIGINT/SIGTERM do)."""
        self.stop_event.set()

    def progress(self) -> tuple[int, int]:
        """Return (back-fill readings acknowledged, back-fill readings planned)."""
        done = sum(
            min(link.published_readings, total)
            for link, total in zip(self.net.links, self.history_total, strict=True)
        )
        return done, sum(self.history_total)

    def run(self) -> int:
        """Run until stopped or the duration has passed; return the exit code."""
        self._prepare()
        options, net = self.options, self.net
        stagger = 1.0 / max(1, len(net.links))
        for k, link in enumerate(net.links):  # spread the first connections over a second
            link.next_attempt = self.m0 + k * stagger
            net.waiting.add(link)
        self.started = True
        deadline = None if options.duration_s is None else self.m0 + options.duration_s
        next_housekeeping = next_save = next_progress = time.monotonic()
        backfill_total = sum(self.history_total)
        if backfill_total:
            logger.info("back-filling %d readings of %d stations", backfill_total, len(net.links))
        try:
            while not self.stop_event.is_set():
                mono = time.monotonic()
                if deadline is not None and mono >= deadline:
                    break
                now = self.sim_now()
                if self.faulty:
                    self._silences(now)
                self._sample_due(now)
                if mono >= next_housekeeping:
                    net.housekeeping(mono)
                    next_housekeeping = mono + HOUSEKEEPING_EVERY_S
                if self._reserve() or mono >= next_save:
                    self._save_state(exact=False)
                    next_save = mono + STATE_SAVE_EVERY_S
                if backfill_total and options.progress and mono >= next_progress:
                    backfill_total = self._print_progress()
                    next_progress = mono + PROGRESS_EVERY_S
                net.pump_dirty()
                wake = (float(self.next_true.min()) - self.sim_now()) / options.speed
                net.poll(min(max(wake, 0.0), 0.1))
                net.pump_dirty()
        finally:
            self._shutdown()
        return 0

    def _print_progress(self) -> int:
        done, total = self.progress()
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(
            f"\rback-fill [{'#' * filled}{'.' * (width - filled)}] {done}/{total} readings"
        )
        if done >= total:
            sys.stderr.write("\n")
            logger.info("back-fill complete: %d readings", total)
            sys.stderr.flush()
            return 0
        sys.stderr.flush()
        return total

    def _drive(self, until: float, done: object) -> None:
        assert callable(done)
        net = self.net
        next_housekeeping = 0.0
        while time.monotonic() < until and not done():
            mono = time.monotonic()
            if mono >= next_housekeeping:
                net.housekeeping(mono)
                next_housekeeping = mono + HOUSEKEEPING_EVERY_S
            net.pump_dirty()
            net.poll(0.05)

    def _shutdown(self) -> None:
        """Flush (wait for PUBACKs), say offline, disconnect, keep what is left for next time."""
        net, links = self.net, self.net.links
        if not self.started:
            return
        for link in links:
            if link.history is not None or link.retry or link.buffer:
                net.dirty.add(link)
        flush_until = time.monotonic() + self.options.flush_timeout_s
        self._drive(flush_until, lambda: all(link.idle() or link.silent for link in links))
        for link in links:
            mid = None if link.silent else link.publish_status("offline")
            if mid is not None:
                net.status_mids[link] = mid
        self._drive(time.monotonic() + 5.0, lambda: not net.status_mids)
        for link in links:
            client = link.client
            if client is not None and link.connected and not link.silent:
                link.connected = False
                net.closing = True
                client.disconnect()
                client.loop_write()
        for k, link in enumerate(links):
            unsent = link.unsent()
            if link.history is not None:
                unsent += [item for chunk in link.history for item in chunk]
            self.store.spool(self.stations[k].id, unsent)
            link.connected = False
            link._discard_client()
        self._save_state(exact=True)
        self.fault_log.close()
        logger.info(
            "stopped: %d readings acknowledged by the broker",
            sum(link.published_readings for link in links),
        )
