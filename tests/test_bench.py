"""`python -m tinv.tools.bench --quick` runs end to end on the tiny model and reports its ratios
and the steps DVAR saves.

No timing is asserted: the numbers depend on the machine and its load."""
import json
import math
import subprocess
import sys

from tinv.tools.bench import table


def test_quick_bench_writes_ratios(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "tinv.tools.bench", "--quick", "--model", "tiny",
                           "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["model"] == "tiny" and res["device"] == "cpu" and res["quick"]
    assert set(res["ratios"]) == {"inversion_single", "inversion_packed", "sampling"}
    for name, value in res["ratios"].items():
        assert math.isfinite(value) and value > 0, name
    inv, smp = res["inversion"], res["sampling"]
    assert math.isclose(res["ratios"]["sampling"], smp["baseline_s"] / smp["tinv_s"])
    assert math.isclose(res["ratios"]["inversion_packed"],
                        inv["baseline_s_per_step"] / inv["tinv_packed_s_per_concept_step"])
    assert table(res) in proc.stdout   # the printed table is the JSON's
    # DVAR on the first two toy concepts: each stopped on its own, the saving is the budget's rest
    d = res["dvar"]
    assert (d["budget"], d["window"], d["concepts"]) == (300, 15, 2) and len(d["steps"]) == 2
    assert all(d["window"] <= n <= 300 for n in d["steps"].values())
    assert math.isclose(d["steps_saved"], 300 - sum(d["steps"].values()) / 2)
    assert "DVAR (N=15, alpha=0.15) on 2 toy concepts" in proc.stdout
