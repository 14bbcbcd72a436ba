"""Protocol simulators of one plant model: test infrastructure of first rank (STYLE §9).

:mod:`simulators.plant` is the plant (signals, setpoints, faults); each protocol module
(:mod:`simulators.modbus`, …) serves it on a real port; :mod:`simulators.cli` runs them
standalone as ``fieldgate sim``.
"""
