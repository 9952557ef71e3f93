"""The inference core: everything that must give the same answer in training, evaluation, the
tools and the service. Imports nothing from `serving.pipeline`, `serving.tools` or `train`
(tests/test_import_direction.py)."""
