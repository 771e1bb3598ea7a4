"""Synthetic test data: echo-like clips (:mod:`.synthetic`) and heart phantoms (:mod:`.phantoms`).

Never used on the processing path; the tests, the benches, ``make run`` and the view CNN's
training script generate their inputs with it.
"""
