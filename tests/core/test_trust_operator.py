"""Issue 13 items 16-18 ("Trust", what an operator meets): `top`'s cells, `apply`'s progress, and
read-only commands run without privileges."""

from __future__ import annotations

import re

from vmqos.cli.top import _rows, row_cells, utilisation_cell
from vmqos.core.analysis.rates import FlowRate
from vmqos.core.analysis.samples import PortRates
from vmqos.core.units import human_pps, human_rate, human_size

AVERAGE, PEAK = 262_144_000, 524_288_000
RAW_FLOAT = re.compile(r"\d\.\d{4,}")  # 548.8502154478151: a float printed whole


def rate(delivered: float, offered: float | None = None, *, limit: int | None = AVERAGE, pps: float = 0.0,
         dropped_pps: float = 0.0) -> FlowRate:
    return FlowRate(seconds=1.0, offered_bps=offered if offered is not None else delivered, delivered_bps=delivered,
                    offered_pps=pps, delivered_pps=pps, dropped_pps=dropped_pps, backlog_bytes=0, limit_bps=limit)


def one_row(flow: FlowRate, peak: int | None = None) -> dict:
    port_rates = {"tap-vm1": PortRates("tap-vm1", "vm1", {"ingress": flow}, None)}
    rows = _rows(port_rates, {("tap-vm1", "ingress"): peak} if peak else {})
    assert len(rows) == 1
    return rows[0]


def test_a_port_at_its_peak_says_it_is_spending_its_burst() -> None:
    row = one_row(rate(PEAK), peak=PEAK)
    assert row["peak_bps"] == PEAK
    assert utilisation_cell(row) == "200% (peak 2×)"
    assert row_cells(row)[-1] == "200% (peak 2×)"


def test_above_the_average_without_a_peak_is_an_overshoot_and_not_marked() -> None:
    assert utilisation_cell(one_row(rate(PEAK))) == "200%"
    assert utilisation_cell(one_row(rate(AVERAGE / 2), peak=PEAK)) == "50%"  # below the average: no mark
    assert utilisation_cell(one_row(rate(PEAK * 0.75), peak=int(AVERAGE * 1.5))) == "150% (peak 1.5×)"


def test_every_rate_cell_has_a_unit_and_never_a_raw_float() -> None:
    row = one_row(rate(548.8502154478151, 1_234.5678, pps=3.3333333, dropped_pps=0.123456), peak=None)
    cells = row_cells(row)
    assert not [c for c in cells if RAW_FLOAT.search(c)], cells
    _, _, _, limit, offered, delivered, dropped, pps, util = cells
    assert delivered == "549 bit/s"
    assert offered == "1.235 kbit/s"
    assert dropped.endswith("0 pkt/s") and "bit/s" in dropped
    assert pps == "3 pkt/s"
    assert limit == "262.144 Mbit/s"
    assert util == "0%"


def test_human_formatters_round_a_measured_float() -> None:
    assert human_rate(548.8502154478151) == "549 bit/s"
    assert human_rate(999.6) == "1 kbit/s"
    assert human_rate(0.4) == "0 bit/s"
    assert human_rate(262_144_000) == "262.144 Mbit/s"  # integers as before
    assert human_size(12.75) == "13 B"
    assert human_pps(1234.56) == "1,235 pkt/s"
    assert human_pps(10_000) == "10,000 pkt/s"
