"""Finished sweeps shipped with gptscope (see ``gptscope.scaling.saved``)."""
