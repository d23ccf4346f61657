"""Dataset cards: a Markdown summary of one version, for people and for MLflow."""

from __future__ import annotations

from pathlib import Path

import duckdb

from catalog.grids import write_class_grids
from catalog.manifest import release_record
from catalog.numbers import shortest_text
from catalog.per_condition import condition_counts
from catalog.quality import version_quality
from catalog.store import Catalog, CatalogError
from catalog.version import DatasetVersion, read_rows, open_version
from synthgen.quality_report import QualityReport


def _table(rows: list[tuple], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else shortest_text(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def quality_or_reason(cat: Catalog, ref: str) -> QualityReport | str:
    """The version's quality report, or why it has none (no kept rows, mixed embedders)."""
    try:
        return version_quality(cat, ref)
    except CatalogError as exc:
        return str(exc)


def _guidance(q, cat: Catalog, name: str) -> list[str]:
    """The card's real-image guidance section: sources, strength, distances to the sources, and any release."""
    rows = q("SELECT init_dataset || '@' || init_version, init_strength, count(*), count(DISTINCT init_image_id), "
             "quantile_cont(init_distance, 0.5), count(*) FILTER (status = 'blocked_real_copy' AND "
             "init_distance <= coalesce(pixel_threshold, 0.24)) FROM t WHERE init_dataset IS NOT NULL "
             "GROUP BY ALL ORDER BY ALL")
    if not rows:
        return []
    out = ["\n## Real-image guidance\n",
           "- each row started from a real image of its class (`init_image_id`; `synthgen audit ID` shows "
           "its source)\n",
           _table([(r[0], shortest_text(r[1]), r[2], r[3], f"{r[4]:.3f}", r[5]) for r in rows],
                  ("source", "strength", "rows", "distinct sources", "median pixel distance to source",
                   "blocked as copies of it"))]
    releases = [(m.version, release_record(m)) for m in cat.versions(name) if release_record(m)]
    out += [f"- released at version {v}: by {r['by']} ({r['at']}): {r['reason']}" for v, r in releases]
    return out


def render_card(cat: Catalog, ref: str, grids: list[tuple[str, Path]] | None = None,
                quality: QualityReport | str | None = None) -> str:
    """The card of a version as Markdown; ``grids`` are (label, image path) per class to show.

    ``quality``: the version's report (computed here when not given).
    """
    v: DatasetVersion = open_version(cat, ref)
    m, info = v.manifest, cat.info(v.name)
    # Only counts and quantiles leave, so a restricted dataset gets a card too (without sample images).
    t = read_rows(v, ["origin", "status", "label_name", "prompt", "model_id", "scheduler", "num_inference_steps",
                  "guidance_scale", "embedding_model", "nn_similarity", "real_nn_similarity", "watermark_method",
                  "prompt_attributes", "clip_score", "init_dataset", "init_version", "init_strength",
                  "init_image_id", "init_distance", "pixel_threshold"],
              "all", None)
    con = duckdb.connect()
    con.register("t", t)
    q = lambda sql: con.execute(sql).fetchall()
    parts = [
        f"# {v.ref}",
        f"{info.get('description') or ''}".strip(),
        f"- origin: **{info['origin']}**{' (restricted)' if info.get('restricted') else ''}",
        f"- created: {m.created_at}; parent: {m.parent or '-'}; rows: {m.rows}",
        f"- manifest sha256 (hash chain head): `{cat.manifest_sha256(v.name, v.version)}`",
        f"- how it was made: {m.message or '-'}",
        "\n## Rows by origin and status\n",
        _table(q("SELECT origin, status, count(*) FROM t GROUP BY ALL ORDER BY ALL"), ("origin", "status", "rows")),
        "\n## Rows by class or prompt\n",
        _table(q("SELECT coalesce(label_name, prompt), count(*) FILTER (status = 'kept'), count(*) FROM t "
                 "GROUP BY ALL ORDER BY ALL LIMIT 50"), ("class / prompt", "kept", "all")),
    ]
    parts += _attribute_section(q)
    counts = condition_counts(v)
    if counts is not None and counts.target is not None:
        parts.append(counts.to_markdown())
    gens = q("SELECT model_id, scheduler, num_inference_steps, guidance_scale, embedding_model, count(*) "
             "FROM t WHERE origin = 'synthetic' GROUP BY ALL ORDER BY ALL")
    if gens:
        parts += ["\n## Generators and embedder\n",
                  _table(gens, ("model", "scheduler", "steps", "guidance", "embedder", "rows"))]
        stats = q("SELECT count(*) FILTER (status='dropped_duplicate'), count(*) FILTER (status='blocked_real_copy'),"
                  " quantile_cont(nn_similarity, [0.5, 0.9, 0.99]), max(real_nn_similarity) "
                  "FROM t WHERE origin = 'synthetic'")[0]
        parts += ["\n## Dedup and memorisation guard\n",
                  f"- dropped as near-duplicates: {stats[0]}; blocked as near-copies of real data: {stats[1]}",
                  f"- nearest-neighbour cosine p50/p90/p99: {', '.join(f'{x:.4f}' for x in stats[2] or [])}",
                  f"- highest similarity to a real sample: {shortest_text(stats[3])}"]
        parts += _guidance(q, cat, v.name)
        marks = q("SELECT coalesce(watermark_method, 'none'), count(*) FROM t WHERE origin = 'synthetic' "
                  "GROUP BY ALL ORDER BY ALL")
        parts += ["\n## Marking\n",
                  "- invisible watermark per synthetic row (payload from the sample id; `audit FILE` decodes it):",
                  _table(marks, ("watermark", "rows")),
                  "- content credentials (C2PA, `c2pa.created` + trainedAlgorithmicMedia) are added at export: "
                  "`synthgen export --credentials`; the export's README names the signer. Real rows never get one."]
    folder = cat.version_dir(v.name, v.version)
    quality = quality or quality_or_reason(cat, v.ref)
    parts += [quality.to_markdown("quality.png" if (folder / "quality.png").is_file() else None)
              if isinstance(quality, QualityReport) else f"\n## Quality\n\n- not assessed: {quality}"]
    if grids:
        parts += ["\n## Samples per class or prompt\n"]
        parts += [f"**{label or '(unlabelled)'}**\n\n![{label}]({path.relative_to(folder).as_posix()})\n"
                  for label, path in grids]
    if (folder / "closest-real-pairs.png").is_file():
        parts += ["\n## Closest pairs to real data (synthetic | real; blocked first)\n",
                  "![closest pairs](closest-real-pairs.png)"]
    parts += [
        "\n## Load it\n",
        "```python\nfrom catalog import Catalog, open_version\n"
        f"v = open_version(Catalog('{cat.location}'), '{v.ref}')\n"
        "table = v.table()        # Arrow, kept rows\nds = v.to_torch()        # (image, label, sample_id)\n```",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _attribute_section(q) -> list[str]:
    """Kept rows and their mean CLIP alignment per prompt-attribute value (a prompt program's breakdown)."""
    rows = q("SELECT k, prompt_attributes->>k, count(*) FILTER (status = 'kept'), "
             "round(avg(clip_score) FILTER (status = 'kept'), 4), count(*) "
             "FROM t, unnest(json_keys(prompt_attributes)) AS a(k) WHERE prompt_attributes IS NOT NULL "
             "GROUP BY ALL ORDER BY ALL LIMIT 200")
    if not rows:
        return []
    return ["\n## Rows by prompt attribute\n",
            "- each row's attribute values are in `prompt_attributes` (JSON text; in `synthgen query`: "
            "`prompt_attributes->>'NAME'`); clip_score is against the prompt the row was drawn from\n",
            _table(rows, ("attribute", "value", "kept", "mean clip_score (kept)", "all"))]


def write_card(cat: Catalog, ref: str, quality: QualityReport | str | None = None) -> Path:
    """Render the card, its per-class sample grids and quality plot into the version's folder; return card.md's path."""
    v = open_version(cat, ref)
    path = cat.version_dir(v.name, v.version) / "card.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    quality = quality or quality_or_reason(cat, v.ref)
    if isinstance(quality, QualityReport):
        quality.write_plot(path.parent / "quality.png")
    path.write_text(render_card(cat, ref, None if v.restricted else write_class_grids(cat, ref), quality))
    return path
