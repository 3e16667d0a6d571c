"""The « Historique des sollicitations » sheet: columns, lists of values, and the row contract.

Shared by the workbook writer (tracking/workbook.py) and the importer (tracking/workbook_import.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from tracking.models import Channel, Outcome

MANDATORY, OPTIONAL, SYSTEM = "obligatoire", "facultative", "système"
TO_QUALIFY = "À qualifier"
YES, NO = "oui", "non"


@dataclass(frozen=True)
class Column:
    """One column of the Historique sheet."""

    header: str
    #: MANDATORY (used to compute volumes), OPTIONAL (local use) or SYSTEM (filled by the service).
    kind: str
    width: int
    #: Name of the list of allowed values (data validation), if any: see `Lists`.
    values: str | None = None
    number_format: str | None = None


#: Column order of every Historique sheet; a row is a tuple in this order.
HISTORIQUE = (
    Column("Référence", SYSTEM, 14),
    Column("Date et heure", MANDATORY, 17, number_format="dd/mm/yyyy hh:mm"),
    Column("Département", MANDATORY, 12, values="departements"),
    Column("Canal", MANDATORY, 22, values="canaux"),
    Column("Thématique", MANDATORY, 30, values="thematiques"),
    Column("Motif", MANDATORY, 36, values="motifs"),
    Column("Sous-motif", OPTIONAL, 30, values="sous_motifs"),
    Column("Issue de l'appel", MANDATORY, 30, values="issues"),
    Column("Attente (s)", OPTIONAL, 11, number_format="0"),
    Column("Conversation (s)", OPTIONAL, 15, number_format="0"),
    Column("Résolu au niveau 1", OPTIONAL, 12, values="oui_non"),
    Column("Escaladé", OPTIONAL, 10, values="oui_non"),
    Column("Commentaire", OPTIONAL, 45),
    Column("N° d'appel", SYSTEM, 11, number_format="0"),
    Column("Appel principal", SYSTEM, 10, values="oui_non"),
)
HEADERS = tuple(c.header for c in HISTORIQUE)
INDEX = {c.header: i for i, c in enumerate(HISTORIQUE)}

CHANNELS = tuple(c.value for c in Channel)
OUTCOMES = tuple(o.value for o in Outcome)


@dataclass(frozen=True)
class Taxonomy:
    """Labels of the motif taxonomy, as shown in workbooks (retired entries included for history).

    `motifs` maps a thématique label to its motif labels; `sous_motifs` maps
    (thématique label, motif label) to sous-motif labels.
    """

    thematiques: tuple[str, ...]
    motifs: dict[str, tuple[str, ...]]
    sous_motifs: dict[tuple[str, str], tuple[str, ...]]

    def lists(self, departements: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        """Allowed values of each list-validated column."""
        motif_labels = dict.fromkeys(m for ms in self.motifs.values() for m in ms)
        sous = dict.fromkeys(s for ss in self.sous_motifs.values() for s in ss)
        return {
            "departements": departements,
            "canaux": CHANNELS,
            "thematiques": (TO_QUALIFY,) + self.thematiques,
            "motifs": (TO_QUALIFY,) + tuple(motif_labels),
            "sous_motifs": tuple(sous),
            "issues": OUTCOMES,
            "oui_non": (YES, NO),
        }
