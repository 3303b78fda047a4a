"""A minimal Flask app protected by Flask-JWT-Extended, for tests/flask_compat.rs.

It decodes authgate's tokens with authgate's secret and nothing else of authgate's: if it answers
200, Flask-JWT-Extended itself accepted the token (and, for cookies on a POST, the CSRF double
submit). Environment: JWT_SECRET_KEY, JWT_TOKEN_LOCATION ("headers" or "cookies"). Listens on
127.0.0.1, on the port given as the first argument (0, the default: any free port), and prints
"listening on 127.0.0.1:PORT" once it accepts connections.
"""

import logging
import os
import sys

from flask import Flask, jsonify
from flask_jwt_extended import JWTManager, get_jwt, get_jwt_identity, jwt_required
from werkzeug.serving import make_server

app = Flask(__name__)
app.config.update(
    JWT_SECRET_KEY=os.environ["JWT_SECRET_KEY"],
    JWT_TOKEN_LOCATION=os.environ["JWT_TOKEN_LOCATION"].split(","),
    JWT_DECODE_ISSUER="authgate",
    JWT_COOKIE_CSRF_PROTECT=True,
    JWT_COOKIE_SECURE=False,
)
JWTManager(app)


@app.route("/whoami", methods=["GET", "POST"])
@jwt_required()
def whoami():
    claims = get_jwt()
    return jsonify(
        identity=get_jwt_identity(),
        username=claims["username"],
        csrf=claims.get("csrf"),
    )


if __name__ == "__main__":
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = make_server("127.0.0.1", port, app, threaded=True)  # bound and listening
    print(f"listening on 127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()
