"""The per-process directory cache: used on every call, never stale after an edit."""

from datetime import date

from sqlalchemy import text

from app import create_app
from directory import operations
from directory.cache import current_version
from ivr.simulator import Emulator, FlaskTransport, Referent
from tests.conftest import AUTH_TOKEN, PUBLIC_BASE
from tests import factories
from tests.helpers import count_selects, heard


def test_second_call_is_served_from_the_cache(app, twilio):
    selects = count_selects(app.extensions["svi.voice_engine"], "lines")
    twilio.call(caller="+33612345678", keys=["93"], referents=[Referent("accept")])
    first = len(selects)
    assert first >= 1
    twilio.call(caller="+33699999999", keys=["93"], referents=[Referent("accept")])
    assert len(selects) == first, "93's lines were read again although the directory did not change"


def test_an_edit_in_another_worker_is_seen_by_the_next_call(app, twilio, db):
    """Two app instances on one database stand for two gunicorn workers."""
    other_worker = create_app(dict(app.config))
    twilio_other = Emulator(FlaskTransport(other_worker), auth_token=AUTH_TOKEN, public_base=PUBLIC_BASE)
    t = twilio_other.call(caller="+33612345678", keys=["93"], referents=[Referent("accept")])
    assert t.dialled == [["+33199009301"]]  # cached in the other worker now

    before = current_version(db)
    factories.departement(db, "93", lines=["01 99 00 93 77"])  # the admin edits, through this worker
    assert current_version(db) == before + 1
    t = twilio_other.call(caller="+33612345678", keys=["93"], referents=[Referent("accept")])
    assert t.dialled == [["+33199009377"]]

    operations.add_exception(db, operations.get_departement(db, "93"), "closure",
                             date(2026, 12, 21), date(2026, 12, 21), "inventaire")
    db.commit()
    t = twilio_other.call(caller="+33612345678", keys=["93"])
    assert "exceptionnellement fermée : inventaire" in heard(t)
    other_worker.extensions["svi.engine"].dispose()
    other_worker.extensions["svi.voice_engine"].dispose()


def test_bulk_delete_and_rollback_are_tracked(app, db):
    before = current_version(db)
    operations.set_worked_holiday(db, "Lundi de Pentecôte", worked=False)  # a bulk DELETE only
    db.commit()
    assert current_version(db) == before + 1
    operations.get_departement(db, "75").ring_timeout = 30
    db.rollback()
    db.commit()
    assert current_version(db) == before + 1, "a rolled-back edit must not bump the version"
    db.execute(text("SELECT 1"))
    db.commit()
    assert current_version(db) == before + 1, "a transaction without directory writes must not bump"
