"""Imports point one way: dags -> airflow -> engine -> core, and the CLI reaches Airflow through one seam.

Read from the source (every import, also those inside functions), so a lazy import that breaks the
layering is caught as well as a top-level one. docs/architecture.md explains the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "plugins" / "pgwarden"

# What each layer must never import, directly or inside a function.
FORBIDDEN = {
    "core": ("pgwarden.engine", "pgwarden.airflow", "pgwarden.cli", "airflow", "psycopg", "boto3", "botocore"),
    "engine": ("pgwarden.airflow", "pgwarden.cli", "airflow"),
    "airflow": ("pgwarden.cli",),
}
CLI_SEAM = PACKAGE / "cli" / "connections.py"


def imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files, f"no module in {layer}/: nothing was checked"
    wrong = [f"{path.relative_to(PACKAGE)} imports {name}"
             for path in files for name in imports(path)
             if any(within(name, prefix) for prefix in FORBIDDEN[layer])]
    assert not wrong, "\n".join(wrong)


def test_the_cli_reaches_airflow_only_through_its_connections_seam() -> None:
    files = sorted((PACKAGE / "cli").rglob("*.py"))
    assert CLI_SEAM in files
    wrong = []
    for path in files:
        for name in imports(path):
            if not (within(name, "airflow") or within(name, "pgwarden.airflow")):
                continue
            if path != CLI_SEAM or name != "pgwarden.airflow.hooks":
                wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not wrong, "the CLI may import only pgwarden.airflow.hooks, in cli/connections.py:\n" + "\n".join(wrong)
    assert "pgwarden.airflow.hooks" in imports(CLI_SEAM)


def test_config_validate_runs_without_importing_airflow(tmp_path) -> None:
    """``pgwarden config validate`` must work (and start fast) where Airflow is not configured."""
    import subprocess
    import sys

    config = tmp_path / "pgwarden.yaml"
    config.write_text("databases:\n  shop: {conn_id: pg_shop, repository: {url: 'file:///tmp/x'}}\n")
    probe = ("import sys; from pgwarden.cli import main; code = main(['--config', sys.argv[1], 'config', "
             "'validate']); loaded = sorted(m for m in sys.modules if m == 'airflow' or m.startswith(('airflow.', "
             "'pgwarden.airflow'))); print(loaded); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", probe, str(config)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ok    shop" in done.stdout
    assert done.stdout.strip().endswith("[]"), done.stdout
