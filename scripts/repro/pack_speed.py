"""Seconds per job-step of the inversion loop, each job alone, packed exactly (each set's
UNet calls in its own batch shape) and packed in one UNet batch (docs/speed.md, "Exact or
one batch"): K toy concepts with the single word's settings, S steps each, 1 thread, the
three ways interleaved R times so that they share the machine's load. Also checks that the
exact pack equals the lone runs bit for bit.

    python scripts/repro/pack_speed.py [K=10] [S=15] [R=2]
"""
from __future__ import annotations

import sys
import time

import torch

from tinv.engine.data import load_concept_images
from tinv.engine.inversion import InversionConfig, invert, invert_packed
from tinv.engine.models import load_parts
from tinv.toyworld import MODEL_DIR
from tinv.toyworld.concepts import CONCEPT_DIR, CONCEPTS


def main(k: int = 10, steps: int = 15, rounds: int = 2) -> None:
    torch.set_num_threads(1)
    parts = load_parts(str(MODEL_DIR))
    names = list(CONCEPTS)[:k]
    images = [load_concept_images(CONCEPT_DIR / n, parts.resolution) for n in names]
    made = [0]

    def jobs():
        made[0] += 1
        return [(im, InversionConfig(placeholder=f"<p{made[0]}-{i}>", initializer_word=CONCEPTS[n]["initializer"],
                                     templates=CONCEPTS[n]["kind"], steps=steps, checkpoint_every=0))
                for i, (n, im) in enumerate(zip(names, images))]

    ways = {"alone": lambda: [invert(parts, im, c, progress=False) for im, c in jobs()],
            "packed": lambda: invert_packed(parts, jobs(), progress=False),
            "one_batch": lambda: invert_packed(parts, jobs(), progress=False, one_batch=True)}
    seconds: dict[str, list[float]] = {w: [] for w in ways}
    for r in range(rounds):
        out = {}
        for way, run in ways.items():
            t0 = time.perf_counter()
            out[way] = run()
            seconds[way].append(time.perf_counter() - t0)
        if r == 0:
            vec = {w: [res.embeds[next(iter(res.embeds))] for res in rs] for w, rs in out.items()}
            same = all(torch.equal(a, b) for a, b in zip(vec["alone"], vec["packed"]))
            far = max(float((a - b).abs().max()) for a, b in zip(vec["alone"], vec["one_batch"]))
            print(f"packed == alone bit for bit: {same}; one_batch vs alone: max |d| {far:.2e}")
    for way, s in seconds.items():
        print(f"{way:9s} {min(s) / (k * steps):.3f} s per job-step (min of {rounds} rounds: "
              f"{', '.join(f'{x:.1f}' for x in s)} s)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
