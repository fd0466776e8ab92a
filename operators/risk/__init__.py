"""Pre-trade risk: checks, exit generators, the trading state machine and what feeds them
(docs/risk.md)."""
