"""The processing chain: the step table (:mod:`.table`), the steps that read and write the
datastack, and the runner that caches them by key."""

from maxrf.pipeline.table import PARAMS, STEPS, Param, Step, chain, default, step

__all__ = ["PARAMS", "STEPS", "Param", "Step", "chain", "default", "step"]
