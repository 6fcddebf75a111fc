"""Example firmware: factory (fixture + DUT) and application device code."""
