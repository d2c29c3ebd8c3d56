"""The steps a recipe chains: download -> detect -> pose -> visualize -> export."""
