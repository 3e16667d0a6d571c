"""One transaction per edge: after-commit callbacks, the CLI's and the web request's commit."""

from __future__ import annotations

from flask import abort
from sqlalchemy import select

from core import db as core_db
from web import policy
from directory.models import Departement


def _name(db, code: str) -> str:
    db.expire_all()
    return db.scalar(select(Departement.name).where(Departement.code == code))


def test_callbacks_run_once_after_the_commit_and_never_after_a_rollback(app, db, caplog):
    ran = []
    with app.app_context():
        core_db.after_commit(lambda: ran.append(_name(db, "93")))
        core_db.session().get(Departement, "93").name = "Seine-Saint-Denis (modifié)"
        assert ran == []
        assert core_db.commit() == []
        assert ran == ["Seine-Saint-Denis (modifié)"]  # another session already sees the change
        core_db.commit()
        assert len(ran) == 1

        core_db.after_commit(lambda: ran.append("rolled back"))
        core_db.rollback()
        core_db.commit()
        assert len(ran) == 1

        def broken():
            raise RuntimeError("serveur de courriel en panne")
        core_db.after_commit(broken)
        core_db.after_commit(lambda: ran.append("next"))
        core_db.session().get(Departement, "75").name = "Paris (modifié)"
        [failure] = core_db.commit()
    assert isinstance(failure, RuntimeError) and "serveur de courriel en panne" in caplog.text
    assert ran[-1] == "next" and _name(db, "75") == "Paris (modifié)"  # the commit stands


def test_cli_transaction_commits_then_runs_callbacks_or_drops_them(app, db):
    ran = []
    with app.app_context():
        try:
            with core_db.transaction() as session:
                session.get(Departement, "93").name = "jamais"
                core_db.after_commit(lambda: ran.append("sent"))
                raise ValueError("refusé")
        except ValueError:
            pass
        assert ran == [] and _name(db, "93") == "Seine-Saint-Denis"
        with core_db.transaction() as session:
            session.get(Departement, "93").name = "Seine-Saint-Denis (CLI)"
            core_db.after_commit(lambda: ran.append("sent"))
    assert ran == ["sent"] and _name(db, "93") == "Seine-Saint-Denis (CLI)"


def test_a_web_request_commits_once_when_it_succeeds_and_rolls_back_otherwise(app, db):
    ran = []

    @app.post("/_test/rename/<code>/<name>")
    @policy.allow(policy.public)
    def rename(code, name):
        core_db.session().get(Departement, code).name = name
        core_db.after_commit(lambda: ran.append(name))
        if name == "refus":
            abort(400)
        return "ok"

    app.config["WTF_CSRF_ENABLED"] = False  # a bare POST, as the test means it
    client = app.test_client()
    assert client.post("/_test/rename/93/refus").status_code == 400
    assert _name(db, "93") == "Seine-Saint-Denis" and ran == []
    assert client.post("/_test/rename/93/accepté").status_code == 200
    assert _name(db, "93") == "accepté" and ran == ["accepté"]
