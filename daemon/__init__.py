"""The daemon shell: CLI, settings, inputs, watching, journal, workers, outputs, logs, metrics."""
