"""`make bench`: a full incoming-call step against a bare Flask endpoint, under gunicorn and wrk."""
