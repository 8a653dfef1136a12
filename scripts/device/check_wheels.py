"""Check a folder of carried wheels against the GPU machine before any device time is spent.

    python3 scripts/device/check_wheels.py .whl

Fails (exit 1, one line per problem) when two versions of one package are carried (they
stop the whole install), when a carried wheel needs a package that is neither carried nor
on the machine (scripts/device/gpu_packages.txt), or a version the machine's copy does not
satisfy, or when wheels + working tree exceed the device tool's 64 MiB. Requirements are
judged for Python 3.12 on x86-64 Linux, the GPU machine's, whatever Python runs this.
"""
from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LIMIT = 64 * 2 ** 20
TARGET_ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def machine_packages() -> dict[str, str | None]:
    out = {}
    for line in (HERE / "gpu_packages.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, *version = line.split()
            out[canonicalize_name(name)] = version[0] if version else None
    return out


def tree_bytes() -> int:
    """What the device tool sends besides carried paths: tracked and untracked-not-ignored files."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\0")
    return sum((REPO / f).stat().st_size for f in files if f and (REPO / f).is_file())


def check(folder: Path) -> list[str]:
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        return [f"{folder}: no wheels"]
    problems, carried = [], {}
    for w in wheels:
        name, version, _, _ = parse_wheel_filename(w.name)
        if name in carried:
            problems.append(f"{name}: two versions carried ({carried[name]}, {version})")
        carried[name] = str(version)
    there = machine_packages()
    for w in wheels:
        with zipfile.ZipFile(w) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            requires = Parser().parsestr(z.read(meta).decode()).get_all("Requires-Dist") or []
        for text in requires:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate(TARGET_ENV):
                continue   # an extra, or another Python
            name = canonicalize_name(req.name)
            if name not in carried and name not in there:
                problems.append(f"{w.name} needs {text}: neither carried nor on the GPU machine")
                continue
            have = carried.get(name) or there[name]   # None: on the machine, version not recorded
            if have is not None and req.specifier and not req.specifier.contains(have, prereleases=True):
                problems.append(f"{w.name} needs {text}; {'carried' if name in carried else 'the machine has'} {have}")
    size, tree = sum(w.stat().st_size for w in wheels), tree_bytes()
    print(f"{len(wheels)} wheels, {size / 2 ** 20:.1f} MiB; working tree {tree / 2 ** 20:.1f} MiB; "
          f"together {(size + tree) / 2 ** 20:.1f} MiB of the 64 MiB a device call carries")
    if size + tree > LIMIT:
        problems.append(f"wheels + tree = {(size + tree) / 2 ** 20:.1f} MiB > 64 MiB")
    return problems


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        print("error: give the wheel folder: python3 scripts/device/check_wheels.py .whl", file=sys.stderr)
        sys.exit(2)
    found = check(Path(sys.argv[1]))
    for p in found:
        print(f"error: {p}", file=sys.stderr)
    sys.exit(1 if found else 0)
