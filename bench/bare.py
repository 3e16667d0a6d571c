"""The baseline: a bare Flask app answering the incoming-call URL with fixed TwiML."""

from __future__ import annotations

from flask import Flask, Response

#: What the real service answers to a new call (same size, same mimetype), as a constant.
TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    '<Say language="fr-FR" voice="Polly.Lea">Bonjour, vous êtes en relation avec '
    "l'assistance téléphonique du système d'information.</Say>"
    '<Gather action="https://svi.bench.invalid/ivr/step?s=departement" finishOnKey="#" '
    'input="dtmf" method="POST" timeout="5"><Say language="fr-FR" voice="Polly.Lea">'
    "Tapez le numéro de votre département, à deux chiffres, ou à trois chiffres pour "
    "l'outre-mer, puis la touche dièse. Pour la Corse, tapez 20.</Say></Gather>"
    '<Redirect method="POST">https://svi.bench.invalid/ivr/step?s=departement</Redirect>'
    "</Response>"
)


def create_app() -> Flask:
    """A Flask app with the real app's URLs for the benchmark, and nothing behind them."""
    app = Flask(__name__)

    @app.post("/ivr/voice")
    def voice():
        """Fixed TwiML: no signature check, no database, no call flow."""
        return Response(TWIML, mimetype="text/xml")

    @app.get("/healthz")
    def healthz():
        """Readiness probe used by the benchmark runner."""
        return {"status": "ok"}

    return app
