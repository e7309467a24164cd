"""``python requirements.py EXTRA...``: the requirements of kaip[EXTRA,...] from pyproject.toml.

The Dockerfiles' deps stage installs these, constrained by requirements.lock, before kaip's own
source is copied, so that a source change does not reinstall them. Standard library only: it
runs on the image's bare Python.
"""

import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
wanted = list(project["dependencies"])
for extra in sys.argv[1:]:
    wanted += project["optional-dependencies"][extra]
print("\n".join(wanted))
