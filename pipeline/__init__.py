"""The science: pure functions over numpy arrays (no daemon concerns).

Shared: frame checks, video decoding, PNG encoding, the Doppler check, error types.
:mod:`.deid` de-identifies, :mod:`.rhd` analyses.
"""
