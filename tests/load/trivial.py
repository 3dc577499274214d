"""The benchmark's yardstick: a Flask endpoint that does nothing, served by the same gunicorn settings."""

from flask import Flask, jsonify, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/trivial")
    def trivial():
        request.get_data()  # read the body, as the receiver must
        return jsonify({"outcome": "accepted"}), 202

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    return app
