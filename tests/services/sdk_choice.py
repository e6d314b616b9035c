"""The SDK the reference services are built with: the official `restate` package, or duro's `sdk` when DURO_TEST_SDK=sdk.

The reference services (official_python.py, official_python_seeds.py) import
the SDK only through this module, so the same handler code runs on both SDKs.
"""

from __future__ import annotations

import importlib
import os

restate = importlib.import_module(os.environ.get("DURO_TEST_SDK", "restate"))
