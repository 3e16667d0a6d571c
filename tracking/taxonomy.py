"""The motif taxonomy (thématique → motif → sous-motif): loaded from a file, read as labels."""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.text import TextRefused, check, clean
from tracking.columns import Taxonomy
from tracking.models import Motif, SousMotif, Thematique

DEFAULT_FILE = Path(__file__).with_name("motifs.yaml")


class TaxonomyError(ValueError):
    """The taxonomy file is invalid; the message is French and says where."""


def _entries(items, where: str, level: str) -> list[dict]:
    if not isinstance(items, list):
        raise TaxonomyError(f"{where} : une liste de {level} est attendue")
    seen, result = set(), []
    for i, item in enumerate(items, start=1):
        if not isinstance(item, dict) or not item.get("key") or not item.get("label"):
            raise TaxonomyError(f"{where}, {level} n° {i} : « key » et « label » sont obligatoires")
        key = str(item["key"])
        try:
            check(key, f"{where}, {level} n° {i}, « key »")
            check(str(item["label"]), f"{where}, {level} « {key} », « label »")
        except TextRefused as exc:
            raise TaxonomyError(str(exc)) from None
        if len(key) > 40 or len(str(item["label"])) > 100:
            raise TaxonomyError(f"{where}, {level} « {key[:40]} » : clé de 40 caractères et "
                                "libellé de 100 caractères au maximum")
        if key in seen:
            raise TaxonomyError(f"{where} : clé en double « {key} »")
        seen.add(key)
        result.append({**item, "key": key, "label": " ".join(str(item["label"]).split())})
    return result


def load_file(db: Session, path: str | Path | None = None) -> dict[str, int]:
    """Upsert the taxonomy from a YAML file by key; entries missing from the file are retired.

    Labels are updated in place, so renaming relabels history without breaking it.
    Returns counts of active entries per level.
    """
    path = Path(path or DEFAULT_FILE)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TaxonomyError(f"{path} : lecture impossible : {exc}") from None
    existing = {t.key: t for t in db.scalars(select(Thematique).options(
        selectinload(Thematique.motifs).selectinload(Motif.sous_motifs)))}
    for t in existing.values():
        t.active = False
        for m in t.motifs:
            m.active = False
            for s in m.sous_motifs:
                s.active = False
    counts = {"thematiques": 0, "motifs": 0, "sous_motifs": 0}
    for tpos, titem in enumerate(_entries(data, path.name, "thématiques")):
        them = existing.get(titem["key"]) or Thematique(key=titem["key"], motifs=[])
        them.label, them.position, them.active = titem["label"], tpos, True
        db.add(them)
        counts["thematiques"] += 1
        motifs = {m.key: m for m in them.motifs}
        for mpos, mitem in enumerate(_entries(titem.get("motifs", []), titem["key"], "motifs")):
            motif = motifs.get(mitem["key"]) or Motif(key=mitem["key"], sous_motifs=[])
            if motif.thematique is None:
                them.motifs.append(motif)
            motif.label, motif.position, motif.active = mitem["label"], mpos, True
            counts["motifs"] += 1
            sous = {s.key: s for s in motif.sous_motifs}
            for spos, sitem in enumerate(_entries(mitem.get("sous_motifs", []),
                                                  f"{titem['key']}/{mitem['key']}", "sous-motifs")):
                s = sous.get(sitem["key"]) or SousMotif(key=sitem["key"])
                if s.motif is None:
                    motif.sous_motifs.append(s)
                s.label, s.position, s.active = sitem["label"], spos, True
                counts["sous_motifs"] += 1
    db.flush()
    return counts


def taxonomy(db: Session) -> Taxonomy:
    """Labels of the whole taxonomy for workbooks, retired entries last (history stays readable)."""
    thems = db.scalars(select(Thematique).options(
        selectinload(Thematique.motifs).selectinload(Motif.sous_motifs))
        .order_by(Thematique.active.desc(), Thematique.position)).all()
    order = lambda items: sorted(items, key=lambda x: (not x.active, x.position))
    # Labels stored before the text policy are cleaned as the rows' cells are: both must match.
    label = lambda item: clean(item.label)
    return Taxonomy(
        thematiques=tuple(label(t) for t in thems),
        motifs={label(t): tuple(label(m) for m in order(t.motifs)) for t in thems},
        sous_motifs={(label(t), label(m)): tuple(label(s) for s in order(m.sous_motifs))
                     for t in thems for m in t.motifs},
    )


def by_key(db: Session, thematique_key: str | None) -> Thematique | None:
    """The thématique with this key (e.g. the one chosen in the call flow's menu)."""
    if not thematique_key:
        return None
    return db.scalars(select(Thematique).where(Thematique.key == thematique_key)).one_or_none()


def resolve(db: Session, thematique: str, motif: str | None = None,
            sous_motif: str | None = None) -> tuple[Thematique, Motif | None, SousMotif | None]:
    """Find taxonomy entries by key or label (case-insensitive); TaxonomyError names what is unknown."""
    def match(items, value, what):
        wanted = value.strip().casefold()
        for item in items:
            if wanted in (item.key.casefold(), item.label.casefold()):
                return item
        raise TaxonomyError(f"{what} inconnu(e) : « {value} »")
    them = match(db.scalars(select(Thematique)).all(), thematique, "thématique")
    m = match(them.motifs, motif, f"motif de « {them.label} »") if motif else None
    s = match(m.sous_motifs, sous_motif, f"sous-motif de « {m.label} »") if (m and sous_motif) else None
    if sous_motif and not m:
        raise TaxonomyError("un sous-motif demande un motif")
    return them, m, s
