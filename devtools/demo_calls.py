"""Plausible, fictitious calls for a period: what the dashboard shows in screenshots and demos.

Each call's outcome follows the directory (closed hours, holidays, no phone assistance) so the
heat map tells a true story; the rest is drawn from a seeded random generator (reproducible).
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from directory import operations
from directory.schedule import State, availability
from tracking import solicitations, taxonomy
from tracking.models import Call, Outcome

#: Départements that get calls (the demo directory's, which have lines), relative volumes.
WEIGHTS = {"93": 9, "75": 8, "57": 5, "2A": 2, "974": 1}
#: Local hours of arrival and their weights: mornings peak, some calls come early or late.
HOURS = {7: 2, 8: 6, 9: 10, 10: 12, 11: 10, 12: 6, 13: 5, 14: 9, 15: 9, 16: 7, 17: 5, 18: 3, 19: 1}
#: (outcome, weight) of a call put through to an open département.
OPEN_OUTCOMES = [(Outcome.answered, 68), (Outcome.no_answer, 10), (Outcome.hung_up_ringing, 8),
                 (Outcome.voicemail, 6), (Outcome.abandoned, 7), (Outcome.error, 1)]
#: (thématique key, motif key) drawn for qualified calls.
MOTIFS = [("usage", "saisie", 8), ("usage", "doublons", 5), ("usage", "parametrage", 3),
          ("habilitations", "connexion", 7), ("habilitations", "creation", 4),
          ("assistance_technique", "incident", 6), ("annuaire", "coordonnees", 2)]


def seed_calls(db: Session, *, start: date, end: date, per_day: int = 24,
               seed: int = 2026) -> int:
    """Insert about `per_day` calls per working day between two local dates; returns the count.
    Flushes only: the caller commits."""
    rng = random.Random(seed)
    views = {v.code: v for v in operations.all_snapshots(db, since=start)}
    codes = [c for c in WEIGHTS if c in views]
    weights = [WEIGHTS[c] for c in codes]
    count, day = 0, start
    while day <= end:
        n = per_day if day.weekday() < 5 else per_day // 8
        for _ in range(rng.randint(n // 2, n + n // 2)):
            code = rng.choices(codes, weights)[0]
            view = views[code]
            hour = rng.choices(list(HOURS), list(HOURS.values()))[0]
            local = datetime.combine(day, time(hour, rng.randrange(60)), ZoneInfo(view.timezone))
            at = local.astimezone(UTC)
            state = availability(view, at)
            wait = talk = None
            if state.state is State.no_phone_assistance:
                outcome = Outcome.no_phone_assistance
            elif state.state is State.closed:
                outcome = Outcome.out_of_hours
            else:
                outcome = rng.choices([o for o, _ in OPEN_OUTCOMES], [w for _, w in OPEN_OUTCOMES])[0]
                if outcome in (Outcome.answered, Outcome.no_answer, Outcome.hung_up_ringing,
                               Outcome.voicemail):
                    wait = rng.randint(4, 40) if outcome is Outcome.answered else rng.randint(15, 60)
                if outcome is Outcome.answered:
                    talk = rng.randint(60, 600)
            motif = rng.choices(MOTIFS, [w for *_, w in MOTIFS])[0]
            call = Call(call_sid=f"CAdemo{seed:04d}{count:022d}", caller_hash=f"demo-{rng.randrange(400)}",
                        caller_masked="+336••••••78", called_number="+33806000156",
                        status="completed", started_at=at, departement_code=code,
                        thematique=motif[0], outcome=outcome, wait_seconds=wait, talk_seconds=talk,
                        ended_at=at + timedelta(seconds=30 + (wait or 0) + (talk or 0)))
            db.add(call)
            db.flush()
            row = solicitations.sync_call(db, call)
            if row is not None and outcome is Outcome.answered and rng.random() < 0.7:
                # Made-up history: set directly, not in anyone's name (no audit entry).
                row.thematique, row.motif, _ = taxonomy.resolve(db, motif[0], motif[1])
            count += 1
        day += timedelta(days=1)
    db.flush()
    return count
