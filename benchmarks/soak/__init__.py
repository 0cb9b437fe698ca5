"""Fault soak benchmark (issue 16): thousands of parts through `lineside run` while faults are injected.

Modules: `plan` (the seeded fault schedule), `parts` (ground truth from a synthetic data set), `camera`
(the line: a camera stand-in process that numbers its frames), `source` (the runtime side of that
camera), `line` (`lineside run` with that source), `plant` (PLC server, serial relay, small reject disk),
`orchestrate` (runs the segments and injects the faults), `analyze` and `report` (the figures).
"""
