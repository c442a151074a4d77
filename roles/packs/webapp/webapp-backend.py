#!/usr/bin/python3
"""Backend of the one-context web-application role pack.

A tiny, dependency-free HTTP service (Python's standard library and the
psql client): GET / answers with this backend's id and the first row of
the demo table, read from the database on every request:

    backend 11 (10.99.1.11): hello from the database

It is the stand-in for a real application; the backend role script
(backend/10-webapp-backend) writes its configuration and starts it, under
systemd when systemd runs, else as a background process with a pid file.

Usage: webapp-backend.py ENV_FILE

ENV_FILE holds KEY=VALUE lines (no quoting); a variable already in the
environment wins (systemd passes the credential paths that way):
    WEBAPP_ID        what the answers call this backend
    LISTEN_ADDR      address to listen on (default 0.0.0.0)
    LISTEN_PORT      port (default 8080)
    WEBAPP_TLS_CERT  with WEBAPP_TLS_KEY: serve HTTPS with that certificate
    PG*              libpq's variables, passed to psql: PGHOST, PGPORT,
                     PGDATABASE, PGUSER, PGPASSFILE (the password is only in
                     that 0600 file), PGSSLMODE, PGSSLROOTCERT
"""

import http.server
import os
import ssl
import subprocess
import sys

QUERY = "SELECT message FROM webapp_hello ORDER BY id LIMIT 1"


def load_env(path):
    env = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                env[key] = value
    env.update({k: v for k, v in os.environ.items() if k in env or k.startswith(("PG", "WEBAPP_"))})
    return env


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "one-context-webapp-backend"

    def do_GET(self):
        if self.path != "/":
            self.answer(404, "not found\n")
            return
        env = dict(os.environ, **{k: v for k, v in self.server.env.items() if k.startswith("PG")})
        try:
            r = subprocess.run(["psql", "-X", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1", "-c", QUERY],
                               env=env, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            self.log_message("psql: %s", e)
            self.answer(503, "database unavailable\n")
            return
        if r.returncode != 0:
            # psql's messages never hold the password (it is in PGPASSFILE).
            self.log_message("psql: %s", r.stderr.strip())
            self.answer(503, "database unavailable\n")
            return
        self.answer(200, "backend %s: %s\n" % (self.server.ident, r.stdout.strip()))

    def answer(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: webapp-backend.py ENV_FILE")
    env = load_env(sys.argv[1])
    addr, port = env.get("LISTEN_ADDR", "0.0.0.0"), int(env.get("LISTEN_PORT", "8080"))
    server = http.server.ThreadingHTTPServer((addr, port), Handler)
    server.daemon_threads = True
    server.env = env
    server.ident = env.get("WEBAPP_ID", addr)
    if env.get("WEBAPP_TLS_CERT"):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(env["WEBAPP_TLS_CERT"], env["WEBAPP_TLS_KEY"])
        # The handshake happens in the request's thread, not in accept().
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    sys.stderr.write("webapp backend %s listening on %s:%d%s\n" % (
        server.ident, addr, port, " (TLS)" if env.get("WEBAPP_TLS_CERT") else ""))
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
