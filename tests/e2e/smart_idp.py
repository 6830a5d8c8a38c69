"""A SMART on FHIR identity provider for the end-to-end tests: signing keys, a JWKS endpoint and
access tokens, all on this machine.

`SmartIdp` generates an RSA-2048 key (RS256) and a P-256 key (ES256), serves their public JWKS
at `http://127.0.0.1:<port>/jwks` from a daemon thread (http.server), counts how often that
document is fetched, and mints access tokens with PyJWT. `metadata()` is the SMART discovery
document a datastore's `IdentityProviderConfiguration.Metadata` holds for this issuer (without an
IdpLambdaArn fhirlake checks tokens against `issuer` and `jwks_uri`; http is allowed on
loopback).

Besides good tokens it makes the bad ones a server must refuse: `unsigned_token` (`alg: none`),
`forged_token` (signed by a stranger's key under a published `kid`), `hs256_confusion_token`
(HMAC-SHA256 keyed with the issuer's RSA public key PEM, the HS/RS confusion attack) and
`tampered_token` (a valid token whose payload was changed after signing).

The `idp` fixture (module scope) starts one and stops it; import it into a test module
(`from smart_idp import idp`) to use it there.
"""

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

HOST = "127.0.0.1"
ALGORITHMS = ("RS256", "ES256")


def b64url(data):
    """Base64url without padding, of bytes or of a JSON-serialisable value."""
    if not isinstance(data, bytes):
        data = json.dumps(data, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_key(alg):
    """A new private key for `alg`: RSA-2048 for RS256, P-256 for ES256."""
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"no key type for {alg}")


def public_jwk(private_key, kid, alg):
    """The public JWK of `private_key`, with `kid`, `alg` and `use: sig`."""
    algorithm = RSAAlgorithm if alg == "RS256" else ECAlgorithm
    jwk = algorithm.to_jwk(private_key.public_key(), as_dict=True)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


class SmartIdp:
    """A local SMART issuer: keys, a JWKS endpoint and a token mint. Use as a context manager,
    or `start()` / `stop()`."""

    def __init__(self):
        self._lock = threading.Lock()
        self._keys = {}            # kid -> (alg, private key), published in the JWKS
        self._retired = {}         # kid -> (alg, private key), no longer published
        self._signing_kid = {}     # alg -> kid that `mint` signs with by default
        self._fetches = []         # monotonic times of each JWKS fetch
        self.jwks_status = 200     # answer this status instead of the JWKS (an issuer that is down)
        for alg in ALGORITHMS:
            self.add_key(alg)
        self._httpd = None
        self._thread = None
        self.port = None

    # --- the HTTP endpoint ------------------------------------------------------------------------

    def start(self):
        idp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.split("?", 1)[0] != "/jwks":
                    self._send(404, {"error": "not_found"})
                    return
                with idp._lock:
                    idp._fetches.append(time.monotonic())
                    status = idp.jwks_status
                self._send(status, idp.jwks() if status == 200 else {"error": "unavailable"})

            def _send(self, status, body):
                data = json.dumps(body).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"smart-idp-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def base_url(self):
        assert self.port is not None, "SmartIdp is not started"
        return f"http://{HOST}:{self.port}"

    @property
    def issuer(self):
        return self.base_url

    @property
    def jwks_uri(self):
        return self.base_url + "/jwks"

    # --- keys -------------------------------------------------------------------------------------

    def add_key(self, alg="RS256", kid=None, signing=True):
        """Generates and publishes a key for `alg`; with `signing`, `mint` uses it from now on.
        Returns its kid."""
        kid = kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
        key = generate_key(alg)
        with self._lock:
            self._keys[kid] = (alg, key)
            if signing or alg not in self._signing_kid:
                self._signing_kid[alg] = kid
        return kid

    def rotate(self, alg="RS256"):
        """Publishes a new signing key for `alg` and withdraws the old one; returns
        (new kid, old kid). Tokens `mint(kid=old)` makes after this are signed by a key the
        JWKS no longer has."""
        old = self.kid(alg)
        new = self.add_key(alg)
        self.retire_key(old)
        return new, old

    def retire_key(self, kid):
        """Stops publishing `kid`. The private key is kept, so tokens can still be signed with it."""
        with self._lock:
            self._retired[kid] = self._keys.pop(kid)

    def kid(self, alg="RS256"):
        """The kid `mint` signs `alg` tokens with by default."""
        return self._signing_kid[alg]

    def private_key(self, kid):
        with self._lock:
            entry = self._keys.get(kid) or self._retired.get(kid)
        assert entry, f"unknown kid {kid}"
        return entry[1]

    def public_pem(self, kid=None):
        """The SubjectPublicKeyInfo PEM of a key (default: the RS256 signing key)."""
        return self.private_key(kid or self.kid("RS256")).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def jwks(self):
        with self._lock:
            return {"keys": [public_jwk(key, kid, alg) for kid, (alg, key) in self._keys.items()]}

    @property
    def fetches(self):
        """How many times the JWKS document has been requested."""
        with self._lock:
            return len(self._fetches)

    def last_fetch(self):
        """`time.monotonic()` of the last JWKS fetch, or None."""
        with self._lock:
            return self._fetches[-1] if self._fetches else None

    # --- discovery --------------------------------------------------------------------------------

    def metadata(self):
        """The SMART configuration document for a datastore that trusts this issuer."""
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "authorization_endpoint": self.base_url + "/authorize",
            "token_endpoint": self.base_url + "/token",
            "grant_types_supported": ["authorization_code", "client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
            "scopes_supported": ["openid", "fhirUser", "launch", "launch/patient", "patient/*.rs", "user/*.rs",
                                 "system/*.rs", "offline_access"],
            "response_types_supported": ["code"],
            "capabilities": ["launch-standalone", "launch-ehr", "client-public", "client-confidential-symmetric",
                             "client-confidential-asymmetric", "context-standalone-patient", "context-ehr-patient",
                             "permission-patient", "permission-user", "permission-v1", "permission-v2", "sso-openid-connect"],
            "code_challenge_methods_supported": ["S256"],
        }

    # --- tokens -----------------------------------------------------------------------------------

    def claims(self, scope, aud, patient=None, fhir_user=None, sub="user-1", client_id="app-1", exp_in=300, nbf=None,
               iss=None, extra_claims=None):
        """The payload `mint` signs. `exp_in` and `nbf` are seconds from now (negative: in the
        past); a claim given the value None in `extra_claims` is left out."""
        now = int(time.time())
        claims = {
            "iss": self.issuer if iss is None else iss,
            "aud": aud,
            "sub": sub,
            "client_id": client_id,
            "scope": scope,
            "iat": now,
            "exp": now + exp_in,
            "jti": uuid.uuid4().hex,
        }
        if nbf is not None:
            claims["nbf"] = now + nbf
        if patient is not None:
            claims["patient"] = patient
        if fhir_user is not None:
            claims["fhirUser"] = fhir_user
        for name, value in (extra_claims or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return {k: v for k, v in claims.items() if v is not None}

    def mint(self, scope, aud, patient=None, fhir_user=None, sub="user-1", client_id="app-1", exp_in=300, nbf=None,
             iss=None, alg="RS256", kid=None, key=None, extra_claims=None, headers=None):
        """A signed access token. `kid` defaults to the signing key of `alg`; `key` (a private
        key) signs instead of the key of `kid` (a forgery, when the kid is published)."""
        kid = kid or self.kid(alg)
        key = key if key is not None else self.private_key(kid)
        payload = self.claims(scope, aud, patient=patient, fhir_user=fhir_user, sub=sub, client_id=client_id,
                              exp_in=exp_in, nbf=nbf, iss=iss, extra_claims=extra_claims)
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid, **(headers or {})})

    def unsigned_token(self, scope, aud, kid=None, **claims):
        """`alg: none`: base64url(header).base64url(payload). with an empty signature."""
        header = {"alg": "none", "typ": "JWT", "kid": kid or self.kid("RS256")}
        return f"{b64url(header)}.{b64url(self.claims(scope, aud, **claims))}."

    def forged_token(self, scope, aud, alg="RS256", **claims):
        """Signed by a key the issuer never published, under the kid of one it did."""
        return self.mint(scope, aud, alg=alg, kid=self.kid(alg), key=generate_key(alg), **claims)

    def hs256_confusion_token(self, scope, aud, **claims):
        """HS256 with the issuer's RSA public key PEM as the HMAC secret: a verifier that takes
        the algorithm from the token and the key from the JWKS would accept it."""
        header = {"alg": "HS256", "typ": "JWT", "kid": self.kid("RS256")}
        signing_input = f"{b64url(header)}.{b64url(self.claims(scope, aud, **claims))}"
        signature = hmac.new(self.public_pem(), signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(signature)}"

    @staticmethod
    def tampered_token(token, **changes):
        """`token` with claims of its payload replaced after signing (the signature kept)."""
        header, payload, signature = token.split(".")
        claims = json.loads(b64url_decode(payload))
        claims.update(changes)
        return f"{header}.{b64url(claims)}.{signature}"

    @staticmethod
    def decode_unverified(token):
        """(header, payload) of a token, without checking anything."""
        header, payload, _ = token.split(".")
        return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload))


@pytest.fixture(scope="module")
def idp():
    """A started SmartIdp, stopped after the module."""
    with SmartIdp() as provider:
        yield provider


class IntrospectionEndpoint:
    """A customer's token-introspection service on 127.0.0.1: what a datastore's IdpLambdaArn
    function does, over HTTP (`fhirlake serve --token-introspection-url`). It records every event
    it is sent and answers with `answer(event)`: `(status, json_body)`, after `delay` seconds."""

    def __init__(self):
        self.events = []
        self.answer = lambda event: (200, {"authPayload": {"isAuthorized": "false"}, "iamRoleARN": ""})
        self.delay = 0.0
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                event = json.loads(self.rfile.read(length))
                endpoint.events.append(event)
                if endpoint.delay:
                    time.sleep(endpoint.delay)
                status, body = endpoint.answer(event)
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass    # the server gave up waiting: its budget is the point of a delay

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self._httpd.server_address[1]}/introspect"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()
