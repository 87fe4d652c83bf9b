"""Airflow's plugin loader registers pgwarden once and imports no pgwarden module under a bare name.

The loader imports every ``.py`` it walks in the plugins folder under its file stem; pgwarden's files
there would become ``sys.modules["config"]``, ``["schedule"]``... (shadowing libraries of those names
and making second copies of every class). Each case runs in a fresh interpreter, the way the API
server, scheduler and workers load plugins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = ROOT / "plugins" / "pgwarden"

_LOAD_PLUGINS = textwrap.dedent("""
    import json, sys
    if {hide_installed}:
        # pgwarden used from a checkout without being installed: no distribution advertises its entry point.
        import importlib.metadata, importlib_metadata
        for module in (importlib.metadata, importlib_metadata):
            real = module.distributions
            module.distributions = lambda real=real, **kw: (
                d for d in real(**kw) if (d.metadata["Name"] or "").lower() != "pgwarden")

    from airflow import plugins_manager

    plugins_manager.ensure_plugins_loaded()
    package_dir = {package_dir!r}
    print(json.dumps({{
        "plugins": [[p["name"], str(p["source"])] for p in plugins_manager.get_plugin_info()],
        "import_errors": plugins_manager.get_import_errors(),
        "modules": {{name: module.__file__ for name, module in list(sys.modules.items())
                    if (getattr(module, "__file__", None) or "").startswith(package_dir)}},
    }}))
""")


def load_plugins(*, syntax: str, hide_installed: bool) -> dict:
    script = _LOAD_PLUGINS.format(hide_installed=hide_installed, package_dir=str(PACKAGE_DIR) + os.sep)
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
           "AIRFLOW__CORE__DAG_IGNORE_FILE_SYNTAX": syntax, "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False"}
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("syntax", ["glob", "regexp"])
@pytest.mark.parametrize("hide_installed", [False, True], ids=["installed-and-folder", "folder-only"])
def test_plugin_loads_once_and_no_pgwarden_module_under_a_bare_name(syntax: str, hide_installed: bool) -> None:
    loaded = load_plugins(syntax=syntax, hide_installed=hide_installed)

    bare = {name: path for name, path in loaded["modules"].items()
            if name != "pgwarden" and not name.startswith("pgwarden.")}
    assert bare == {}, f"pgwarden modules registered under bare names: {sorted(bare)}"
    assert loaded["modules"], "the plugin must have imported pgwarden (the check above would be empty)"

    ours = [source for name, source in loaded["plugins"] if name == "pgwarden"]
    assert len(ours) == 1, loaded["plugins"]
    if hide_installed:
        assert ours[0] == "$PLUGINS_FOLDER/pgwarden_plugin.py"
    else:
        assert ours[0].startswith("pgwarden==") and "pgwarden.airflow.plugin:PgwardenPlugin" in ours[0]
    assert loaded["import_errors"] == {}
