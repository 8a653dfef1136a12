"""scripts/device/check_wheels.py: carried wheels are checked against the GPU machine's
packages (scripts/device/gpu_packages.txt) before any device time is spent."""
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _wheel(folder: Path, name: str, version: str, requires: list[str]) -> None:
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as z:
        z.writestr(f"{name}-{version}.dist-info/METADATA", meta)


def _check(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts/device/check_wheels.py"), str(folder)],
                          capture_output=True, text=True, timeout=60)


def test_wheels_whose_needs_are_met_pass(tmp_path):
    # carried (omegaconf), on the machine at a fitting version (numpy 2.5.2), an extra, another Python
    _wheel(tmp_path, "alpha", "1.0", ["omegaconf>=2.3", "numpy>=2", "wandb; extra == 'log'",
                                      "dataclasses; python_version < '3.7'"])
    _wheel(tmp_path, "omegaconf", "2.3.1", ["PyYAML>=5.1.0"])
    proc = _check(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "2 wheels" in proc.stdout and "of the 64 MiB" in proc.stdout


def test_unmet_needs_and_duplicates_are_named(tmp_path):
    _wheel(tmp_path, "alpha", "1.0", ["not-on-the-machine>=1", "numpy>=3", "omegaconf<2"])
    _wheel(tmp_path, "omegaconf", "2.3.1", [])
    _wheel(tmp_path, "omegaconf", "2.2.0", [])
    proc = _check(tmp_path)
    assert proc.returncode == 1
    errors = proc.stderr.splitlines()
    assert any("not-on-the-machine" in e and "neither carried nor on the GPU machine" in e for e in errors)
    assert any("numpy>=3" in e and "the machine has 2.5.2" in e for e in errors)
    assert any("omegaconf: two versions carried" in e for e in errors)
    assert all(e.startswith("error: ") for e in errors)
