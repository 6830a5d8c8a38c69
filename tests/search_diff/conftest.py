"""The search differential suite reuses the end-to-end fixtures (tests/e2e/conftest.py): the
server (`$FHIRLAKE_BIN`, backend from `$FHIRLAKE_E2E_BACKEND`), boto3 datastores and the SigV4
client. They are imported here rather than duplicated; tests/e2e stays importable on its own."""

import importlib.util
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
E2E = HERE.parent / "e2e"
for path in (str(HERE), str(E2E)):
    if path not in sys.path:
        sys.path.insert(0, path)

_spec = importlib.util.spec_from_file_location("e2e_conftest", E2E / "conftest.py")
e2e_conftest = importlib.util.module_from_spec(_spec)
sys.modules["e2e_conftest"] = e2e_conftest
_spec.loader.exec_module(e2e_conftest)

# Fixtures, re-exported by name so pytest registers them for this directory.
aws_backend = e2e_conftest.aws_backend
introspection = e2e_conftest.introspection
server = e2e_conftest.server
healthlake = e2e_conftest.healthlake
new_datastore = e2e_conftest.new_datastore
