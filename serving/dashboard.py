"""The dashboard: one HTML page and its script, drawn in the browser from what the API already
serves (/metrics, /v1/runs, /v1/experiments/<name>). No CDN: everything comes from here."""

from __future__ import annotations

from flask import Blueprint

dashboard = Blueprint("dashboard", __name__, static_folder="static", static_url_path="/dashboard/static")


@dashboard.get("/dashboard")
def page():
    """The dashboard page."""
    return dashboard.send_static_file("dashboard.html")
