"""Did-you-mean for options and keys: fewest edits, then the longest shared prefix."""
from __future__ import annotations

import pytest

from tinv.harness.overrides import closest, edit_distance

MODELS = ["ldm14", "sd15", "sd21", "tiny_ldm", "tiny_sd", "toyworld"]


@pytest.mark.parametrize("word, options, want", [
    ("sd16", MODELS, "sd15"), ("sd1.5", MODELS, "sd15"), ("SD15", MODELS, "sd15"), ("ldm", MODELS, "ldm14"),
    ("toy", MODELS, "toyworld"), ("singleword", ["single_word", "two_word"], "single_word"),
    ("initializr", ["initializer", "kind", "path"], "initializer"), ("evl", ["eval", "seed"], "eval"),
    ("banana", MODELS, None), ("x", [], None),
])
def test_closest(word, options, want):
    assert closest(word, options) == want


def test_edit_distance():
    assert edit_distance("sd16", "sd15") == 1 and edit_distance("sd16", "sd21") == 2
    assert edit_distance("", "abc") == 3 and edit_distance("kitten", "sitting") == 3
