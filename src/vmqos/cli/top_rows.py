"""`vmqos top`'s rows from columnar rates: sorted and filtered with numpy, built only for the rows shown.

At 10,000 ports `top` has 20,000 rows a second; a dict per row, a Python sort and a history list
per row cost more than the pass itself. With columnar rates (`core.analysis.columns.LazyRates`)
the order is computed on the columns with the same keys and ties as `top._sort` (a stable sort,
busiest first, then by port name), and a row's dict is built only for the rows the screen holds.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from vmqos.core.analysis.columns import LazyRates, PortTable

FIELDS = {"offered": 0, "delivered": 1, "pps": 2, "dropped": 4}  # columns of `RateColumns.rates`
HISTORY = 24  # samples a sparkline shows


class ColumnRows:
    """Orders the (port, direction) rows of columnar rates; keeps the delivered rates' history."""

    def __init__(self) -> None:
        self._table: PortTable | None = None
        self.history: list[npt.NDArray[np.float64]] = []

    def record(self, rates: LazyRates) -> None:
        """This sample's delivered rates, for the sparklines (the last HISTORY of the same ports)."""
        table = rates.columns.current.table
        if table is not self._table:
            self._table, self.history = table, []
        self.history.append(rates.columns.rates[:, :, 1].copy())
        del self.history[:-HISTORY]

    def order(self, rates: LazyRates, sort_by: str, reverse: bool, keep: Callable[[str, str | None], bool] | None,
              ) -> npt.NDArray[np.int64]:
        """Flat row numbers (port row x 2 + direction), as `top._sort(visible(_rows(...)))` orders them."""
        cols = rates.columns
        table = cols.current.table
        has = cols.has.reshape(-1)
        if keep is not None:
            inst = cols.current.instances
            wanted = np.array([keep(p, inst.get(p)) for p in table.ports], dtype=bool)
            has = has & np.repeat(wanted, 2)
        flat = np.flatnonzero(has)
        rank = table.name_rank[flat // 2]
        if sort_by == "port":  # by (port, direction): "egress" before "ingress"
            keys = (1 - flat % 2, rank)
            idx = np.lexsort(keys)
            return flat[idx[::-1] if reverse else idx]
        if sort_by == "util":
            bps, pps = table.limit_columns()
            r = cols.rates.reshape(-1, cols.rates.shape[2])[flat]
            lb, lp = bps.reshape(-1)[flat], pps.reshape(-1)[flat]
            with np.errstate(divide="ignore", invalid="ignore"):
                value = np.where(lb > 0, r[:, 1] / lb, np.where(lp > 0, r[:, 3] / lp, 0.0))
        else:
            value = cols.rates.reshape(-1, cols.rates.shape[2])[flat, FIELDS[sort_by]]
        value = np.nan_to_num(value, nan=0.0)
        # top._sort: busiest first, then the port's name, both descending; ties keep the rows' order
        idx = np.lexsort((rank, value)) if reverse else np.lexsort((-rank, -value))
        return flat[idx]

    def rows(self, rates: LazyRates, flat: npt.NDArray[np.int64], row_of: Callable[[Any, str], dict[str, Any]],
             ) -> tuple[list[dict[str, Any]], dict[tuple[str, str], list[float]]]:
        """The rows `flat` as `top._rows` builds them, and their sparklines' history."""
        out, history = [], {}
        for f in flat.tolist():
            row, d = divmod(f, 2)
            pr = rates.row(row)
            direction = ("ingress", "egress")[d]
            out.append(row_of(pr, direction))
            history[(pr.port, direction)] = [float(h[row, d]) for h in self.history]
        return out, history
