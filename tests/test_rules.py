"""The directory's rules, one value at a time: what the import, the CLI and the web all accept."""

from datetime import date, time

import pytest

from directory import rules
from directory.models import RingStrategy
from directory.rules import DirectoryError, Period


def test_numbers_are_read_with_the_departement_region():
    assert rules.normalize_number("0590 12 34 56", "GP") == "+590590123456"
    with pytest.raises(DirectoryError, match="invalide pour la région FR"):
        rules.normalize_number("0590 12 34 56", "FR")
    assert rules.parse_lines("01 99 00 93 01 ; 02 61 91 93 02", "FR") == ("+33199009301",
                                                                          "+33261919302")


def test_lines_are_ten_at_most_without_doubles_and_every_bad_one_is_named():
    eleven = [f"01 99 00 93 {n:02d}" for n in range(11)]
    with pytest.raises(DirectoryError, match="10 lignes au maximum"):
        rules.check_lines(eleven, "FR")
    with pytest.raises(DirectoryError, match="numéro en double"):
        rules.check_lines(["01 99 00 93 01", "+33199009301"], "FR")
    with pytest.raises(DirectoryError, match="« 12 ».*« abc »"):
        rules.check_lines(["12", "abc"], "FR")


@pytest.mark.parametrize("text, ok", [("5", True), ("120", True), ("4", False), ("121", False),
                                      ("20s", False), ("", False)])
def test_ring_timeout_bounds(text, ok):
    if ok:
        assert rules.parse_ring_timeout(text) == int(text)
    else:
        with pytest.raises(DirectoryError, match="entre 5 et 120"):
            rules.parse_ring_timeout(text)


def test_words_round_trip():
    for strategy in RingStrategy:
        assert rules.parse_ring_strategy(rules.format_ring_strategy(strategy)) is strategy
    assert rules.parse_ring_strategy("Simultanee") is RingStrategy.simultaneous
    assert [rules.parse_yes_no(w) for w in ("OUI", "non", "vrai", "0")] == [True, False, True, False]
    assert rules.parse_email("") is None
    with pytest.raises(DirectoryError, match="courriel invalide"):
        rules.parse_email("assistance@")


def test_weekly_slots_round_trip_and_refuse_overlaps():
    text = "lundi-vendredi 09:30-11:30 14:00-16:30 ; samedi 9h00-12h00"
    slots = rules.parse_slots(text)
    assert len(slots) == 11 and slots[0] == (0, time(9, 30), time(11, 30))
    assert rules.format_slots(slots) == "lundi-vendredi 09:30-11:30 14:00-16:30 ; samedi 09:00-12:00"
    with pytest.raises(DirectoryError, match="chevauchent le mardi"):
        rules.check_slots([(1, time(9), time(12)), (1, time(11), time(14))])


def test_periods_round_trip_and_say_what_is_wrong():
    text = "2026-12-24..2026-12-26 14:00-16:00 permanence"
    [period] = rules.parse_periods(text, opening=True)
    assert period == Period(date(2026, 12, 24), date(2026, 12, 26), "permanence", time(14), time(16))
    assert rules.format_period(period) == text
    with pytest.raises(DirectoryError, match="la date de fin précède la date de début : «"):
        rules.parse_period("2026-12-26..2026-12-24", opening=False)
    with pytest.raises(DirectoryError, match="doit préciser ses horaires"):
        rules.parse_period("2026-12-24", opening=True)
    with pytest.raises(DirectoryError, match="hors des années"):
        rules.parse_date("1999-12-31")


def test_holidays_are_those_of_the_subdivision():
    assert rules.parse_holidays("vendredi saint", "57") == ("Vendredi saint",)
    with pytest.raises(DirectoryError, match="jour férié inconnu"):
        rules.parse_holidays("vendredi saint", None)


def test_dates_out_of_plausible_years_and_invisible_text_are_refused_everywhere():
    from datetime import date
    import pytest
    from directory import rules
    for start, end in ((date(1, 1, 1), date(1, 1, 1)), (date(2026, 1, 1), date(9999, 12, 31))):
        with pytest.raises(rules.DirectoryError, match="hors des années 2000 à 2099"):
            rules.check_dates(start, end)
    for text in ("assistance.gouv.fr/a\x01b", "x\uffffy", "a\r\nb"):
        with pytest.raises(rules.DirectoryError):
            rules.parse_free_text(text)
    with pytest.raises(rules.DirectoryError):
        rules.parse_email("a\x01b@x.fr")
