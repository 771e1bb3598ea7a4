"""Synthetic test data: echo-like clips (:mod:`.synthetic`), the same clips as ultrasound DICOM
files (:mod:`.dicom_writer`) and heart phantoms (:mod:`.phantoms`).

Never used on the processing path; the tests, the benches, ``make run`` and the view CNN's
training script generate their inputs with it.
"""
