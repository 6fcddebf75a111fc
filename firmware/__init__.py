"""The emulated imp (its impOS) and the runtime that runs deployed device code."""
