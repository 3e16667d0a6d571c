"""The pure pieces: keypad parsing, French phrasing, availability, flow validation, engine."""

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from callflows import definition, engine
from callflows.actions import CallState, Dial, Gather, Hangup, Say
from callflows.keypad import CORSICA, parse_departement
from directory.schedule import (ClosedReason, DepartementView, Exception_, LineView, Slot, State,
                                availability)
from directory.operations import DEFAULT_SLOTS
from prompts import french

PARIS = ZoneInfo("Europe/Paris")
SLOTS = tuple(Slot(wd, s, e) for wd, s, e in DEFAULT_SLOTS)


def view(code="75", **kw):
    base = dict(code=code, name="Paris", lines=(LineView("+33199007501"),), slots=SLOTS)
    base.update(kw)
    return DepartementView(**base)


@pytest.mark.parametrize("typed, expected", [
    ("75", "75"), ("01", "01"), ("95", "95"), ("093", "93"), ("971", "971"), ("976", "976"),
    ("20", CORSICA), ("020", CORSICA), ("201", "2A"), ("202", "2B"),
    ("00", None), ("96", None), ("975", None), ("977", None), ("7", None), ("", None),
    (None, None), ("9999", None), ("2A", None), ("*1", None),
])
def test_keypad_entry(typed, expected):
    assert parse_departement(typed) == expected


def test_french_hours_group_days_and_say_noon():
    slots = SLOTS + (Slot(5, time(9), time(12)),)
    assert french.weekly_hours(slots) == (
        "du lundi au vendredi, de 9 heures 30 à 11 heures 30 et de 14 heures à 16 heures 30; "
        "le samedi, de 9 heures à midi")
    assert french.weekly_hours(()) == "à aucun moment de la semaine"
    now = datetime(2026, 12, 30, 17, 0, tzinfo=PARIS)
    assert french.instant(datetime(2027, 1, 4, 9, 30, tzinfo=PARIS), now, "Europe/Paris") == \
        "lundi 4 janvier 2027 à 9 heures 30"
    assert french.instant(datetime(2026, 12, 31, 9, 30, tzinfo=PARIS), now, "Europe/Paris") == \
        "demain à 9 heures 30"
    assert french.spoken_address("https://assistance.gouv.fr/") == "assistance.gouv.fr"


def test_availability_boundaries_and_dst():
    v = view()
    at = lambda s: datetime.fromisoformat(s).replace(tzinfo=PARIS)
    assert availability(v, at("2026-03-30T09:30")).state is State.open  # first minute
    closed = availability(v, at("2026-03-30T11:30"))  # end is exclusive
    assert closed.state is State.closed and closed.reason is ClosedReason.outside_hours
    assert closed.next_opening == at("2026-03-30T14:00")
    # The Sunday of the DST change does not shift local opening hours.
    assert availability(v, at("2026-03-29T12:00")).next_opening == at("2026-03-30T09:30")


def test_availability_priorities_closure_over_opening_over_holiday():
    xmas = date(2026, 12, 25)
    opening = Exception_("opening", xmas, xmas, "permanence", time(10), time(12))
    at = datetime(2026, 12, 25, 10, 30, tzinfo=PARIS)
    assert availability(view(exceptions=(opening,)), at).is_open
    closure = Exception_("closure", xmas, xmas, "grève")
    a = availability(view(exceptions=(opening, closure)), at)
    assert (a.state, a.reason, a.closure_reason) == (State.closed, ClosedReason.closure, "grève")
    a = availability(view(), at)
    assert (a.reason, a.holiday_name) == (ClosedReason.holiday, "Noël")


def test_overseas_holidays_use_their_subdivision():
    abolition = datetime(2027, 12, 20, 10, tzinfo=ZoneInfo("Indian/Reunion"))  # a Monday
    a = availability(view("974", timezone="Indian/Reunion", holiday_subdiv="974"), abolition)
    assert a.reason is ClosedReason.holiday and "esclavage" in a.holiday_name.lower()
    # The same Monday is an ordinary working day in Paris.
    assert availability(view(), datetime(2027, 12, 20, 10, tzinfo=PARIS)).is_open


def test_two_holidays_on_one_day_stay_closed_unless_both_are_worked():
    guyane = dict(timezone="America/Cayenne", holiday_subdiv="973")
    at = datetime(2030, 6, 10, 10, tzinfo=ZoneInfo("America/Cayenne"))  # Abolition + Pentecôte
    a = availability(view("973", **guyane, worked_holidays=frozenset({"Lundi de Pentecôte"})), at)
    assert (a.reason, a.holiday_name) == (ClosedReason.holiday, "Abolition de l'esclavage")
    both = frozenset({"Lundi de Pentecôte", "Abolition de l'esclavage"})
    assert availability(view("973", **guyane, worked_holidays=both), at).is_open


def test_no_line_or_no_assistance_means_no_phone_assistance():
    at = datetime(2026, 12, 21, 10, tzinfo=PARIS)
    assert availability(view(lines=()), at).state is State.no_phone_assistance
    assert availability(view(phone_assistance=False), at).state is State.no_phone_assistance
    with pytest.raises(ValueError):
        availability(view(), datetime(2026, 12, 21, 10))


def _ctx(**kw):
    views = {"75": view(), "93": view("93", name="Seine-Saint-Denis", ring_strategy="sequential",
                                      lines=(LineView("+33199009301"), LineView("+33261919302")))}
    return engine.Context(now=datetime(2026, 12, 21, 10, tzinfo=PARIS), directory=views.get,
                          form_url="assistance.example.gouv.fr", **kw)


def test_engine_runs_without_flask_or_database():
    flow = definition.load()
    out = engine.start(flow, _ctx())
    assert isinstance(out.actions[0], Say) and isinstance(out.actions[-1], Gather)
    assert out.actions[-1].result == CallState("departement")
    out = engine.resume(flow, CallState("departement"), engine.Input(digits="93"), _ctx())
    assert out.actions[-1].result == CallState("confirm", departement="93")
    out = engine.resume(flow, CallState("motif", departement="93"), engine.Input(digits="1"), _ctx())
    dial = out.actions[-1]
    assert isinstance(dial, Dial) and dial.numbers == ("+33199009301",)
    assert (dial.result.departement, dial.result.thematique) == ("93", "assistance_technique")
    out = engine.resume(flow, dial.result, engine.Input(dial_status="no-answer"), _ctx())
    assert out.actions[-1].numbers == ("+33261919302",)  # sequential: next line
    out = engine.resume(flow, out.actions[-1].result,
                        engine.Input(dial_status="completed", dial_accepted=True), _ctx())
    assert out.track["outcome"] == "answered" and isinstance(out.actions[-1], Hangup)


def test_flow_without_motif_menu_is_valid(tmp_path):
    import yaml
    data = yaml.safe_load(definition.DEFAULT_FLOW.read_text())
    del data["steps"]["motif"]
    for step in data["steps"].values():
        for key, value in list(step.items()):
            if value == "motif":
                step[key] = "route"
        for option in step.get("options", {}).values():
            if option.get("next") == "motif":
                option["next"] = "route"
    flow = definition.validate(data)
    out = engine.resume(flow, CallState("confirm", departement="75"), engine.Input(digits="1"), _ctx())
    assert isinstance(out.actions[-1], Dial)


def test_invalid_flow_definition_names_every_problem(tmp_path):
    bad = tmp_path / "flow.yaml"
    bad.write_text("""
start: welcome
steps:
  welcome: {type: say, prompts: [welcome, no_such_prompt], next: nowhere}
  menu: {type: menu, options: {"12": {next: welcome}}, on_timeout: welcome}
  odd: {type: teleport}
""", encoding="utf-8")
    with pytest.raises(definition.FlowError) as err:
        definition.load(bad)
    message = str(err.value)
    for expected in ("étape welcome : « next » renvoie à l'étape inconnue 'nowhere'",
                     "prompt inconnu 'no_such_prompt'",
                     "étape menu : clé obligatoire manquante « on_failure »",
                     "option '12' : une seule touche",
                     "étape odd : type inconnu 'teleport'"):
        assert expected in message
    bad.write_text("steps: [", encoding="utf-8")
    with pytest.raises(definition.FlowError, match="lecture impossible"):
        definition.load(bad)
