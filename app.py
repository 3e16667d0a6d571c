"""SVI: the single-number telephone assistance. `flask --app app run` starts it."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, abort, send_from_directory

from core import settings


def create_app(test_config: dict | None = None) -> Flask:
    """Application factory: settings, database, flow definition, blueprints, CLI."""
    app = Flask(__name__, instance_path=str(Path(__file__).parent / "instance"),
                static_folder="web/static", template_folder="web/templates")
    app.config.update(settings.load(app.instance_path, overrides=test_config))
    from core import logs
    logs.configure(app.config)  # LOG_FORMAT: JSON lines in production, text in development
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from core import db
    from core.request import Request
    from core.sessions import CookieSessions
    app.request_class = Request  # Twilio's form bodies parsed in one pass
    app.session_interface = CookieSessions()
    app.config.setdefault("CLOCK", db.utcnow)
    db.init_app(app)

    from directory import cache as directory_cache
    directory_cache.init_app(app)
    from prompts import overrides as prompt_overrides
    prompt_overrides.init_app(app)

    from callflows import definition
    app.extensions["svi.flow"] = definition.load(app.config["SVI_FLOW_FILE"] or None)
    from core import observability, proxy
    proxy.init_app(app)  # X-Forwarded-* honoured from TRUSTED_PROXIES only
    observability.init_app(app)  # access log, metrics, /readyz and /metrics

    from ivr.blueprint import bp as ivr_bp
    app.register_blueprint(ivr_bp)

    import web
    web.init_app(app)

    import prompts
    from prompts import operations as prompt_operations

    @app.get("/prompts/audio/<path:name>")
    def prompt_audio(name: str):
        """Recorded prompts played by Twilio instead of speech: shipped with the code
        (prompts/audio/<prompt>.mp3) or uploaded by an admin (instance/prompts/<random>.mp3)."""
        if prompts.audio_file(Path(name).stem) == name:
            return send_from_directory(prompts.AUDIO_DIR, name)
        uploaded = prompt_operations.stored_audio(
            prompt_operations.audio_folder(app.instance_path), name)
        if uploaded is None:  # only names of ours, checked by pattern: no path can get through
            abort(404)
        return send_from_directory(uploaded.parent, uploaded.name)

    @app.get("/healthz")
    def healthz():
        """Liveness probe for the load balancer."""
        return {"status": "ok"}

    from core import cli as core_cli
    from directory import cli as directory_cli
    from ivr import simulator
    from tracking import cli as tracking_cli
    core_cli.init_app(app)
    directory_cli.init_app(app)
    simulator.init_app(app)
    tracking_cli.init_app(app)
    from scheduler import cli as scheduler_cli
    scheduler_cli.init_app(app)
    from accounts import cli as accounts_cli
    accounts_cli.init_app(app)
    import tickets
    tickets.init_app(app)
    from tracking import journal
    journal.init_app(app)  # last: replays dead processes' call journals (a thread, if any)
    from core.request import remember_sync_functions
    remember_sync_functions(app)  # once every hook and view is registered
    return app
