"""An OIDC resource server that is not ours: it validates the bearer token of every request
with PyJWT (keys from the issuer's JWKS over HTTPS, trusting the given CA) and answers the
claims as JSON, or 401 with PyJWT's reason.

Usage: verifier.py PORT JWKS_URL ISSUER AUDIENCE CA_FILE
Prints "verifier listening on 127.0.0.1:PORT" when ready."""
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt

port, jwks_url, issuer, audience, ca_file = sys.argv[1:6]
context = ssl.create_default_context(cafile=ca_file)
# The test rotates keys every second, faster than PyJWT's default 30 s between refetches for
# an unknown kid; in production a key is published a whole rotation period before it signs.
keys = jwt.PyJWKClient(jwks_url, cache_keys=True, ssl_context=context, cooldown_duration=0.2)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.answer()

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        self.answer()

    def answer(self):
        values = self.headers.get_all("authorization") or []
        try:
            if len(values) != 1 or not values[0].startswith("Bearer "):
                raise ValueError(f"expected one bearer token, got {len(values)} Authorization headers")
            token = values[0][len("Bearer "):]
            key = keys.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=["ES256", "RS256", "EdDSA"],
                audience=audience,
                issuer=issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
            status, body = 200, {
                "claims": claims,
                "kid": jwt.get_unverified_header(token).get("kid"),
                "token": token,
            }
        except Exception as error:  # every refusal is an answer, never a crash
            status, body = 401, {"error": f"{type(error).__name__}: {error}"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
print(f"verifier listening on 127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
