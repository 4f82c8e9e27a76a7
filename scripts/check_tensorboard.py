#!/usr/bin/env python3
"""Reads a run directory's TensorBoard event files with TensorBoard's own reader and prints, as
JSON, every scalar tag with its steps: {"tag": [step, ...], ...}. Used by MonitoringTests
(tensorboard must be installed; see docs/operations.md)."""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ea = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
ea.Reload()
print(json.dumps({tag: [e.step for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}))
