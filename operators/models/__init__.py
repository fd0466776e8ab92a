"""Models scored in the stream: tree models from the registry (`tree.py`), the rule that turns a
model's probabilities into a direction (`decision.py`) and the signal producers (`producers.py`)."""
