"""Test-wide settings.

Under CI (CI=true) hypothesis runs derandomized, so a green CI is reproducible; local
runs explore fresh examples each time, and a stress run explores many:
PERFSIM_PROPERTY_EXAMPLES=1500 pytest tests/test_properties.py
"""
import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
