"""SQL views over the run tables: the report's headline numbers for a dashboard or a SQL user,
defined exactly as operators/analytics defines them (tests/infra/test_clickhouse_views.py
compares the two on a real replay).

  run_returns          one row per equity point: the per-bar return (the first from the
                       initial cash), the bar step, the running peak and the drawdown
  run_metrics          per run: bars, initial/final equity, total return, annualised return,
                       volatility and Sharpe (periods per year from the median bar step,
                       365-day years), maximum drawdown
  run_trade_stats      per run, over closed round trips (`round_trips`; a win is pnl > 0, a
                       loss pnl < 0, net of fees): trades, open trips, win rate, profit
                       factor, expectancy, average win/loss, gross and net PnL, fees, fees share
  run_period_returns   per run, UTC month and day: the return from the previous period's last
                       equity (the initial cash for the first); a bar belongs to the period
                       its interval lies in (close time - 1 ns), as in the report

Read them with the run's id: `SELECT * FROM run_metrics WHERE run_id = 'bt-...'`.
"""

from __future__ import annotations

from typing import Any

NS_PER_YEAR = 365 * 24 * 3600 * 10**9


def _views(db: str) -> dict[str, str]:
    q = f"`{db}`"
    return {
        "run_returns": f"""
SELECT run_id, ts_event, equity, prev_equity, equity / prev_equity - 1 AS ret, step_ns,
       greatest(initial, max(equity) OVER (PARTITION BY run_id ORDER BY ts_event
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) AS peak,
       equity / peak - 1 AS drawdown, initial
FROM (
    SELECT e.run_id AS run_id, e.ts_event AS ts_event, e.equity AS equity, r.initial AS initial,
           if(row_number() OVER w = 1, r.initial, lagInFrame(e.equity) OVER w) AS prev_equity,
           if(row_number() OVER w = 1, NULL,
              toUnixTimestamp64Nano(e.ts_event)
              - lagInFrame(toUnixTimestamp64Nano(e.ts_event)) OVER w) AS step_ns
    FROM (SELECT run_id, ts_event, equity FROM {q}.equity FINAL WHERE account = 'account') AS e
    INNER JOIN (
        SELECT run_id, JSONExtractFloat(config_json, 'portfolio', 'initial_cash') AS initial
        FROM {q}.runs FINAL
    ) AS r ON e.run_id = r.run_id
    WINDOW w AS (PARTITION BY e.run_id ORDER BY e.ts_event
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)""",
        "run_metrics": f"""
SELECT run_id, count() AS n_bars, any(initial) AS initial_equity,
       argMax(equity, ts_event) AS final_equity, final_equity / initial_equity - 1 AS total_return,
       {NS_PER_YEAR} / quantileExactInclusive(0.5)(step_ns) AS periods_per_year,
       avg(ret) * periods_per_year AS annual_return,
       stddevSamp(ret) * sqrt(periods_per_year) AS volatility,
       avg(ret) / stddevSamp(ret) * sqrt(periods_per_year) AS sharpe,
       -least(min(drawdown), 0) AS max_drawdown
FROM {q}.run_returns GROUP BY run_id""",
        "run_trade_stats": f"""
SELECT run_id, n AS n_trades, n_open, wins / n AS win_rate,
       if(n_losses > 0, win_sum / -loss_sum, NULL) AS profit_factor,
       pnl_sum / n AS expectancy,
       if(wins > 0, win_sum / wins, NULL) AS avg_win,
       if(n_losses > 0, loss_sum / n_losses, NULL) AS avg_loss,
       gross AS gross_pnl, fee_sum AS fees, pnl_sum AS net_pnl,
       if(gross > 0, fee_sum / gross, NULL) AS fees_share
FROM (
    SELECT run_id, countIf(exit_reason != 'open') AS n, countIf(exit_reason = 'open') AS n_open,
           countIf(exit_reason != 'open' AND pnl > 0) AS wins,
           countIf(exit_reason != 'open' AND pnl < 0) AS n_losses,
           sumIf(pnl, exit_reason != 'open' AND pnl > 0) AS win_sum,
           sumIf(pnl, exit_reason != 'open' AND pnl < 0) AS loss_sum,
           sumIf(pnl, exit_reason != 'open') AS pnl_sum,
           sumIf(gross_pnl, exit_reason != 'open') AS gross,
           sumIf(fees, exit_reason != 'open') AS fee_sum
    FROM {q}.round_trips FINAL GROUP BY run_id
)
WHERE n > 0""",
        "run_period_returns": f"""
SELECT run_id, kind, period, n_bars, end_equity,
       if(row_number() OVER w = 1, initial, lagInFrame(end_equity) OVER w) AS start_equity,
       end_equity / start_equity - 1 AS ret
FROM (
    SELECT run_id, kind, period, count() AS n_bars, argMax(equity, ts_event) AS end_equity,
           any(initial) AS initial
    FROM (
        SELECT run_id, ts_event, equity, initial, 'month' AS kind,
               formatDateTime(toStartOfMonth(ts_event - toIntervalNanosecond(1)), '%Y-%m')
                   AS period
        FROM {q}.run_returns
        UNION ALL
        SELECT run_id, ts_event, equity, initial, 'day' AS kind,
               formatDateTime(toDate(ts_event - toIntervalNanosecond(1)), '%Y-%m-%d') AS period
        FROM {q}.run_returns
    )
    GROUP BY run_id, kind, period
)
WINDOW w AS (PARTITION BY run_id, kind ORDER BY period
             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)""",
    }


VIEWS = tuple(_views("db"))


def ensure_views(client: Any, database: str) -> None:
    """(Re)create every view; cheap and idempotent (views hold no data)."""
    for name, sql in _views(database).items():
        client.command(f"CREATE OR REPLACE VIEW `{database}`.`{name}` AS {sql}")
