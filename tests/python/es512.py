"""ES512 (P-521) tokens between the gateway and an independent JOSE implementation (PyJWT with
cryptography). Driven by tests/it/python_client.rs:

  es512.py genkey   prints a new P-521 private key, PEM (SEC1, "EC PRIVATE KEY")
  es512.py check    with GATEHOUSE_URL, GATEHOUSE_KID, GATEHOUSE_TOKEN (signed by the gateway),
                    GATEHOUSE_PRIVATE_KEY and GATEHOUSE_CLAIMS (JSON): verifies the gateway's
                    token with the key from /.well-known/jwks.json and from
                    /api/jwt/public-key, checks the JWK, then signs GATEHOUSE_CLAIMS with the
                    private key and prints that token on the last line.
"""

import json
import os
import sys
import urllib.request

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def get_json(path):
    with urllib.request.urlopen(os.environ["GATEHOUSE_URL"] + path) as response:
        assert response.status == 200, (path, response.status)
        return json.loads(response.read())


def genkey():
    key = ec.generate_private_key(ec.SECP521R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    sys.stdout.write(pem.decode())


def check():
    kid = os.environ["GATEHOUSE_KID"]
    token = os.environ["GATEHOUSE_TOKEN"]
    private = serialization.load_pem_private_key(
        os.environ["GATEHOUSE_PRIVATE_KEY"].encode(), password=None
    )

    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES512" and header["kid"] == kid, header

    jwks = get_json("/.well-known/jwks.json")
    [jwk] = [k for k in jwks["keys"] if k.get("kid") == kid]
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-521" and jwk["alg"] == "ES512", jwk
    from_jwks = jwt.PyJWK(jwk).key
    expected = private.public_key().public_numbers()
    assert from_jwks.public_numbers() == expected, "the JWK is not the configured key"
    claims = jwt.decode(token, from_jwks, algorithms=["ES512"], options={"verify_aud": False})
    assert claims["sub"], claims

    pem = get_json("/api/jwt/public-key?kid=" + kid)["publicKey"]
    from_pem = serialization.load_pem_public_key(pem.encode())
    assert from_pem.public_numbers() == expected, "the PEM is not the configured key"
    jwt.decode(token, from_pem, algorithms=["ES512"], options={"verify_aud": False})

    # The gateway's signature is the fixed-size R || S of RFC 7518, not DER.
    signature = token.split(".")[2]
    assert len(jwt.utils.base64url_decode(signature)) == 132, len(signature)

    own = json.loads(os.environ["GATEHOUSE_CLAIMS"])
    print("verified the gateway's ES512 token with PyJWT")
    print(jwt.encode(own, private, algorithm="ES512", headers={"kid": kid}))


if __name__ == "__main__":
    {"genkey": genkey, "check": check}[sys.argv[1]]()
