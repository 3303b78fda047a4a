"""What an app behind authgate does with X-Auth-Assertion: verify it against authgate's JWKS.

    python identity_verify.py JWKS_URL ASSERTION AUDIENCE ISSUER

Prints the verified claims as JSON, or fails. These lines are the README's example.
"""
import json
import sys

import jwt

jwks_url, assertion, audience, issuer = sys.argv[1:5]

jwks = jwt.PyJWKClient(jwks_url)  # fetches and caches the public keys
if jwt.get_unverified_header(assertion).get("typ") != "authgate-assertion+jwt":
    raise jwt.InvalidTokenError("not an assertion")
key = jwks.get_signing_key_from_jwt(assertion)  # the key its `kid` names
claims = jwt.decode(
    assertion,
    key,
    algorithms=["EdDSA", "ES256", "RS256"],
    audience=audience,
    issuer=issuer,
    options={"require": ["exp", "iat", "sub", "aud"]},
)
print(json.dumps(claims))
