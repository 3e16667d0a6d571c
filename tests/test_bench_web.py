"""The web pages' benchmark measures the real pages: its data builder, one round at a tiny size,
and cross-checks between each page and its hand-written SQL that would catch an error page."""

from __future__ import annotations

import random
from datetime import UTC, timedelta

import pytest
from sqlalchemy.orm import Session

from bench import harness, web
from directory.operations import all_snapshots, snapshot
from directory.schedule import availability

SIZES = web.Sizes(lines=150, closures=300, audit=400, deep=300)


@pytest.fixture(scope="module")
def bench_app(tmp_path_factory):
    """A tiny benchmark database on SQLite, and the real app on it."""
    with harness.on_sqlite(lambda url: web.build(url, SIZES),
                           tmp_path_factory.mktemp("bench-web")) as built:
        yield built


def _floor(app, page: harness.Page) -> list:
    with app.extensions["svi.engine"].connect() as conn:
        return conn.execute(page.statement(), page.params).all()


def test_builder_makes_the_asked_data(bench_app):
    app, data = bench_app
    assert data.counts["départements"] == 101
    assert data.counts["lines"] == SIZES.lines
    assert data.counts["closures"] == SIZES.closures
    assert data.counts["audit rows"] == SIZES.audit
    assert data.counts["closures of the edited département"] > 0


def test_one_round_measures_every_page_and_its_floor(bench_app):
    app, data = bench_app
    results = web.measure(app, data, requests=3, warmup=1)
    assert set(results) == {"overview", "edit", "audit", "audit-deep"}
    for key, timings in results.items():
        assert timings.problems == [], key
        assert len(timings.page) == len(timings.sql) == 3
        assert all(ms > 0 for ms in timings.page + timings.sql)
    pages = web.pages(data, "sqlite")
    report, passed = harness.table({"sqlite": results}, {p.key: p.title for p in pages},
                                   {p.key: p.target for p in pages}, **web.TABLE_STYLE)
    assert report.count("| sqlite |") == 4
    # Timing is judged by `make bench`, never here: only that the directory pages are judged.
    assert report.count("| PASS |") + report.count("| FAIL |") == 2


def test_each_floor_returns_what_its_page_shows(bench_app):
    app, data = bench_app
    client = web.clients(app)["admin"]
    for page in web.pages(data, "sqlite"):
        answer = client.get(page.url)
        html = answer.get_data(as_text=True)
        rows = _floor(app, page)
        assert answer.status_code == 200 and page.expected in html, page.key
        assert page.check(html, rows) == [], page.key
        # The same check refuses a page that does not show the SQL's data, or an error page.
        assert page.check(html, rows[1:] or rows[:0]) != [], page.key
        assert page.check(client.get("/nulle-part").get_data(as_text=True), rows) != [], page.key


def test_an_error_page_stops_the_measurement(bench_app, monkeypatch):
    app, data = bench_app
    wrong = web.pages(data, "sqlite")[1]
    wrong.url = "/annuaire/00/modifier"
    monkeypatch.setattr(web, "pages", lambda *args: [wrong])
    with pytest.raises(RuntimeError, match="answered 404"):
        web.measure(app, data, requests=1, warmup=0)


def test_overview_snapshots_without_past_closures_give_the_same_states(bench_app):
    app, data = bench_app
    rng = random.Random(3)
    with Session(app.extensions["svi.engine"]) as db:
        full = all_snapshots(db)
        assert full == [snapshot(db, view.code) for view in full]
        left_out = 0
        for _ in range(40):
            now = data.at + timedelta(minutes=rng.randrange(-400 * 1440, 400 * 1440))
            recent = all_snapshots(db, since=(now.astimezone(UTC) - timedelta(days=1)).date())
            left_out += sum(len(v.exceptions) for v in full) - sum(len(v.exceptions)
                                                                   for v in recent)
            assert ([availability(v, now) for v in recent]
                    == [availability(v, now) for v in full]), now
        assert left_out > 0
