"""Which rows may be compared: same weights, same evaluation protocol, same concept kind.

A mean over rows measured under different protocols is not a number about the setups:
64 samples at DDIM 50 against 4 samples at DDIM 4, objects against styles, or the toy
world's weights before and after a retrain. Every figure, the claims and the report
check the rows they pool with `require_comparable`, which names the first field that
differs and how to keep one value (`--where eval=paper`). The report instead splits the
table into `comparable_groups`, one section each.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

CONCEPT_KIND = "concept.kind"


@dataclass(frozen=True)
class Field:
    name: str            # what the error calls it
    columns: tuple       # where a table may hold it, first present wins
    choice: str | None   # the Hydra group whose choice usually sets it (the --where hint)


# Order matters: the first differing field is the one an error names.
FIELDS = (
    Field("concept kind", (CONCEPT_KIND,), None),
    Field("model weights", ("provenance.weights", "model.path", "model.name", "model"), "model"),
    Field("evaluator", ("eval_protocol.evaluator", "model.evaluator"), "model"),
    Field("prompt set", ("eval_protocol.prompt_set", "eval.prompt_set"), "eval"),
    Field("samples per prompt", ("eval.num_samples",), "eval"),
    Field("sampling steps", ("eval.steps",), "eval"),
    Field("guidance scale", ("eval.guidance",), "eval"),
    Field("evaluation seeds", ("eval_protocol.seeds", "eval.seed"), "eval"),
)
# Columns a figure sweeps on purpose: the guidance figure pools guidance scales.
GUIDANCE = "eval.guidance"
# Columns a group's sweep figures and claims span on purpose (guidance, training-set
# size): a comparable group may hold several values; its Figure-10 grid keeps one.
SWEPT = (GUIDANCE, "train_images", "concept.n_images")


class IncomparableRows(ValueError):
    """Rows from different protocols were about to be pooled."""


def _column(df: pd.DataFrame, field: Field) -> str | None:
    """The first of the field's columns that the table holds with a value."""
    return next((c for c in field.columns if c in df.columns and df[c].notna().any()), None)


def _text(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def protocol_key(df: pd.DataFrame, ignore=()) -> list[str]:
    """The columns that define a comparable group in this table (those it has)."""
    cols = []
    for f in FIELDS:
        c = _column(df, f)
        if c and c not in ignore and f.name not in ignore:
            cols.append(c)
    return cols


def differing(df: pd.DataFrame, ignore=()) -> tuple[Field, str, dict] | None:
    """(field, column, {value: rows}) of the first protocol field with two values, or None."""
    for f in FIELDS:
        c = _column(df, f)
        if not c or c in ignore or f.name in ignore:
            continue
        counts = df[c].map(lambda v: "unknown" if pd.isna(v) else _text(v)).value_counts()
        if len(counts) > 1:
            return f, c, counts.to_dict()
    return None


def _hint(df: pd.DataFrame, field: Field, column: str, counts: dict) -> str:
    """`--where` advice: the Hydra choice when it alone tells the values apart."""
    value = max(counts, key=counts.get)
    if field.choice and field.choice in df.columns:
        ch = df[[field.choice, column]].dropna().astype(str)
        if not ch.empty and ch.groupby(field.choice)[column].nunique().max() == 1 \
                and ch[field.choice].nunique() == len(counts):
            pick = ch[ch[column] == value][field.choice]
            if not pick.empty:
                return f"--where {field.choice}={pick.iloc[0]}"
    return f"--where {column}={value}"


def require_comparable(df: pd.DataFrame, ignore=()) -> None:
    """Raise IncomparableRows naming the first protocol field on which the rows differ."""
    found = differing(df, ignore)
    if found is None:
        return
    field, column, counts = found
    values = ", ".join(f"{v} ({n} rows)" for v, n in counts.items())
    raise IncomparableRows(f"rows differ in {field.name} ({column}: {values}); they cannot be pooled: "
                           f"pick one with {_hint(df, field, column, counts)}")


def comparable_groups(df: pd.DataFrame, ignore=()) -> list[tuple[dict, pd.DataFrame]]:
    """[(the group's protocol values, its rows)], objects before styles, biggest first."""
    key = protocol_key(df, ignore)
    if not key:
        return [({}, df)]
    filled = df[key].astype(object).where(df[key].notna(), "unknown").map(_text)
    groups = []
    for values, idx in filled.groupby(key, sort=False).groups.items():
        values = values if isinstance(values, tuple) else (values,)
        groups.append((dict(zip(key, values)), df.loc[idx]))
    kind_rank = {"object": 0, "style": 1}
    groups.sort(key=lambda g: (kind_rank.get(g[0].get(CONCEPT_KIND), 2), -len(g[1])))
    return groups


def n_concepts(df: pd.DataFrame) -> int:
    return int(df["concept"].nunique()) if "concept" in df.columns else 0


def describe(df: pd.DataFrame) -> str:
    """One line a figure carries: concepts, samples per prompt, and the protocol."""
    def one(col, fmt="{}"):
        if col not in df.columns or df[col].isna().all():
            return None
        vals = sorted(set(df[col].dropna()), key=lambda v: (not isinstance(v, (int, float)), v if isinstance(v, (int, float)) else str(v)))
        return fmt.format("/".join(dict.fromkeys(_text(v) for v in vals)))
    kind = one(CONCEPT_KIND)
    n = n_concepts(df)
    parts = [f"n = {n} {kind + ' ' if kind else ''}concept{'' if n == 1 else 's'}",
             one("eval.num_samples", "{} samples per prompt"),
             one("eval", "eval={}"), one("eval.steps", "DDIM {} steps"), one("eval.guidance", "guidance {}"),
             one("eval_protocol.prompt_set", "prompts: {}") or one("eval.prompt_set", "prompts: {}"),
             one("eval_protocol.evaluator", "evaluator: {}"), one("model", "model={}")]
    return " · ".join(p for p in parts if p)


def title(values: dict, df: pd.DataFrame) -> str:
    """A report section's heading for one comparable group."""
    kind = values.get(CONCEPT_KIND, "")
    kind = {"object": "Objects", "style": "Styles"}.get(kind, kind.capitalize() or "Rows")
    return f"{kind}: {describe(df)}"
