"""Limits of the directory's settings: plain constants, importable by the pure call-flow engine."""

#: Twilio's <Dial> takes at most 10 <Number>: a département has at most this many lines.
MAX_LINES = 10
#: Seconds a line may ring before it counts as not answered (bounds included).
RING_TIMEOUT_MIN = 5
RING_TIMEOUT_MAX = 120
#: Longest free text of a setting (form address, email, reason of a period): its column's size.
MAX_TEXT = 200
#: Exceptional closures and openings still to come shown in one edit page (older ones, and any
#: beyond this, are kept as they are).
MAX_EDITED_PERIODS = 500
