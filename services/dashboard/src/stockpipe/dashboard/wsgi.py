"""What gunicorn imports: ``gunicorn stockpipe.dashboard.wsgi:server``.

Settings are read from the environment when gunicorn loads this module in a worker; the
app connects to PostgreSQL on its first request, never here.
"""

from __future__ import annotations

from stockpipe.common.settings import load
from stockpipe.dashboard.app import create_app
from stockpipe.dashboard.settings import DashboardSettings

app = create_app(load(DashboardSettings))
server = app.server
