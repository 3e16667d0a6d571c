"""Keypad entries: a département (keypads have no letters and codes have 2 or 3 digits), and a
number to be called back (French formats)."""

from __future__ import annotations

import phonenumbers
from phonenumbers import PhoneNumberType

CORSICA = "corsica"
#: Digits typed after 20 on the Corsica question.
CORSICA_KEYS = {"1": "2A", "2": "2B"}
OVERSEAS = {"971", "972", "973", "974", "976"}


def parse_departement(digits: str | None) -> str | None:
    """Département code for what was typed, CORSICA for 20, None when invalid.

    Two digits for 01–95, three for 971–976; "201"/"202" type ahead the Corsica question;
    a leading zero on three digits is tolerated ("093" is 93, "020" is 20).
    """
    d = (digits or "").strip()
    if not (d.isascii() and d.isdigit()):  # "²" or "٣" pass isdigit() alone
        return None
    if len(d) == 3 and d.startswith("0"):
        d = d[1:]
    if d == "20":
        return CORSICA
    if d in ("201", "202"):
        return CORSICA_KEYS[d[2]]
    if len(d) == 2 and 1 <= int(d) <= 95:
        return d
    if d in OVERSEAS:
        return d
    return None


#: Regions of the French numbering plan (metropolitan France, then the overseas départements):
#: a ten-digit number typed as in France ("0692…") belongs to exactly one of them.
FRENCH_REGIONS = ("FR", "GP", "MQ", "GF", "RE", "YT")
#: Numbers a referent may call back: no premium-rate or shared-cost numbers, no short codes.
CALLABLE_TYPES = frozenset({PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE,
                            PhoneNumberType.FIXED_LINE_OR_MOBILE, PhoneNumberType.VOIP,
                            PhoneNumberType.TOLL_FREE})


def _callable(number: phonenumbers.PhoneNumber) -> str | None:
    # A number with no country behind it (+870/+881 satellite, +882/+883 international
    # networks: region "001") costs premium rates however the library types it: refused.
    if phonenumbers.region_code_for_number(number) in (None, "001", "ZZ"):
        return None
    if phonenumbers.is_valid_number(number) and phonenumbers.number_type(number) in CALLABLE_TYPES:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def parse_callback_number(digits: str | None, region: str = "FR") -> str | None:
    """The E.164 number a caller typed to be called back, None when it cannot be called.

    French formats: ten digits as dialled in France ("06 12 34 56 78", "0590 12 34 56"), read
    in the département's region first, then in the other regions of the French plan (a
    metropolitan mobile typed in La Réunion, a Réunion one typed in Paris); or an international
    number after 00 ("0033…", "0044…"). Premium-rate and shared-cost numbers, and numbers of
    no country (satellite, international networks), are refused.
    """
    d = (digits or "").strip()
    if not (d.isascii() and d.isdigit()) or not 4 <= len(d) <= 17:
        return None
    regions = (region,) if d.startswith("00") else (
        (region,) + tuple(r for r in FRENCH_REGIONS if r != region))
    for candidate in regions:
        try:
            number = phonenumbers.parse(d, candidate)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):  # its region: callable or not, look no further
            return _callable(number)
    return None


def callable_caller(number: str | None) -> str | None:
    """The caller's own number (Twilio's `From`, E.164) when it can be called back, else None:
    a hidden number, a SIP address, a premium-rate or malformed number."""
    text = (number or "").strip()
    if not (text.startswith("+") and text[1:].isascii() and text[1:].isdigit()):
        return None
    try:
        return _callable(phonenumbers.parse(text, None))
    except phonenumbers.NumberParseException:
        return None
