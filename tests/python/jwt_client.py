"""Drives Gatehouse's JWT API with FusionAuth's official Python client (fusionauth-client).

Run by tests/it/python_client.rs against a running gateway. Everything comes from the
environment:

  GATEHOUSE_URL            base URL of the gateway, e.g. http://127.0.0.1:9011
  GATEHOUSE_API_KEY        a global API key
  GATEHOUSE_TENANT_API_KEY an API key locked to GATEHOUSE_OTHER_TENANT_ID
  GATEHOUSE_TENANT_ID      the tenant of the users
  GATEHOUSE_OTHER_TENANT_ID another tenant
  GATEHOUSE_APP_ID         the application the sessions are for
  GATEHOUSE_OTHER_APP_ID   a second application (the "sso" user is registered to it)
  GATEHOUSE_ISSUER         the tenant's issuer
  GATEHOUSE_RSA_KID        the id of an RSA key (published)
  GATEHOUSE_HMAC_KID       the id of an HMAC key (never published)
  GATEHOUSE_SESSIONS       JSON: {name: {token, refreshToken, refreshTokenId, userId}} with the
                           sessions main, second, sso, sso_other (the sso user in OTHER_APP),
                           carol, dave, erin, frank

Exits 0 when every check passes; otherwise prints the first failed check and exits 1.
"""

import base64
import json
import os
import sys
import uuid

from fusionauth.fusionauth_client import FusionAuthClient


class CheckFailed(Exception):
    pass


def env(name):
    value = os.environ.get(name)
    if not value:
        raise CheckFailed(f"environment variable {name} is not set")
    return value


def describe(response):
    body = None
    if response.success_response is not None:
        body = response.success_response
    elif response.error_response is not None:
        body = response.error_response
        if hasattr(body, "text"):
            body = body.text
    elif response.response is not None:
        body = response.response.text
    return f"status {response.status}, body {body!r}"


def expect_status(what, response, status):
    if response.status != status:
        raise CheckFailed(f"{what}: expected status {status}, got {describe(response)}")
    return response


def check(what, condition, detail=""):
    if not condition:
        raise CheckFailed(f"{what} {detail}".strip())


def claims_of(token):
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def field_error_code(response, field):
    errors = response.error_response or {}
    items = errors.get("fieldErrors", {}).get(field) or [{}]
    return items[0].get("code")


def main():
    base_url = env("GATEHOUSE_URL")
    api_key = env("GATEHOUSE_API_KEY")
    tenant_api_key = env("GATEHOUSE_TENANT_API_KEY")
    tenant_id = env("GATEHOUSE_TENANT_ID")
    other_tenant_id = env("GATEHOUSE_OTHER_TENANT_ID")
    app_id = env("GATEHOUSE_APP_ID")
    other_app_id = env("GATEHOUSE_OTHER_APP_ID")
    issuer = env("GATEHOUSE_ISSUER")
    rsa_kid = env("GATEHOUSE_RSA_KID")
    hmac_kid = env("GATEHOUSE_HMAC_KID")
    sessions = json.loads(env("GATEHOUSE_SESSIONS"))
    main_s = sessions["main"]
    second = sessions["second"]
    sso = sessions["sso"]
    sso_other = sessions["sso_other"]
    carol = sessions["carol"]
    dave = sessions["dave"]
    erin = sessions["erin"]
    frank = sessions["frank"]

    client = FusionAuthClient(api_key, base_url)
    anonymous = FusionAuthClient(None, base_url)
    wrong_key = FusionAuthClient("not-the-api-key", base_url)
    locked = FusionAuthClient(tenant_api_key, base_url)

    # --- public keys, JWKS, discovery ------------------------------------------------------
    r = expect_status("retrieve_jwt_public_keys", client.retrieve_jwt_public_keys(), 200)
    keys = r.success_response["publicKeys"]
    check("retrieve_jwt_public_keys lists the RSA key", rsa_kid in keys, str(list(keys)))
    check("retrieve_jwt_public_keys never lists the HMAC key", hmac_kid not in keys)
    for kid, pem in keys.items():
        check(f"public key {kid} is a PEM", pem.startswith("-----BEGIN PUBLIC KEY-----"), pem)

    r = expect_status("retrieve_jwt_public_key(kid)", client.retrieve_jwt_public_key(rsa_kid), 200)
    check("retrieve_jwt_public_key returns the key", r.success_response["publicKey"] == keys[rsa_kid])
    expect_status("retrieve_jwt_public_key(HMAC kid)", client.retrieve_jwt_public_key(hmac_kid), 404)
    expect_status(
        "retrieve_jwt_public_key(unknown)", client.retrieve_jwt_public_key(str(uuid.uuid4())), 404
    )
    r = expect_status(
        "retrieve_jwt_public_key_by_application_id",
        client.retrieve_jwt_public_key_by_application_id(app_id),
        200,
    )
    check("the application's key is the tenant's RSA key", r.success_response["publicKey"] == keys[rsa_kid])
    expect_status(
        "retrieve_jwt_public_key_by_application_id(unknown)",
        client.retrieve_jwt_public_key_by_application_id(str(uuid.uuid4())),
        404,
    )

    r = expect_status("retrieve_json_web_key_set", client.retrieve_json_web_key_set(), 200)
    kids = sorted(k["kid"] for k in r.success_response["keys"])
    check("the JWKS lists the public keys", kids == sorted(keys), f"{kids} vs {sorted(keys)}")
    r = expect_status("retrieve_open_id_configuration", client.retrieve_open_id_configuration(), 200)
    check("discovery names the issuer", r.success_response["issuer"] == issuer, str(r.success_response))
    check(
        "discovery points at the JWKS",
        r.success_response["jwks_uri"].endswith("/.well-known/jwks.json"),
        str(r.success_response),
    )

    # --- validate --------------------------------------------------------------------------
    r = expect_status("validate_jwt", anonymous.validate_jwt(main_s["token"]), 200)
    jwt = r.success_response["jwt"]
    check("validate_jwt returns the claims", jwt["sub"] == main_s["userId"], str(jwt))
    check("validate_jwt: applicationId", jwt.get("applicationId") == app_id, str(jwt))
    check("validate_jwt: issuer", jwt.get("iss") == issuer, str(jwt))
    expect_status("validate_jwt(garbage)", anonymous.validate_jwt("not.a.jwt"), 401)

    # --- refresh ---------------------------------------------------------------------------
    r = expect_status(
        "exchange_refresh_token_for_jwt",
        anonymous.exchange_refresh_token_for_jwt(
            {"refreshToken": main_s["refreshToken"], "token": main_s["token"]}
        ),
        200,
    )
    refreshed = r.success_response
    check("refresh: same refresh token (Reusable)", refreshed["refreshToken"] == main_s["refreshToken"])
    check("refresh: refreshTokenId", refreshed["refreshTokenId"] == main_s["refreshTokenId"], str(refreshed))
    claims = claims_of(refreshed["token"])
    check("refresh: authenticationType", claims.get("authenticationType") == "REFRESH_TOKEN", str(claims))
    check("refresh: sid", claims.get("sid") == main_s["refreshTokenId"], str(claims))
    cookies = r.response.cookies
    check("refresh: access_token cookie", cookies.get("access_token") == refreshed["token"])
    check("refresh: refresh_token cookie", cookies.get("refresh_token") == main_s["refreshToken"])
    expect_status("validate_jwt(refreshed)", anonymous.validate_jwt(refreshed["token"]), 200)

    r = expect_status(
        "exchange_refresh_token_for_jwt(unknown)",
        anonymous.exchange_refresh_token_for_jwt({"refreshToken": "not-a-refresh-token"}),
        400,
    )
    check(
        "refresh(unknown): field error",
        field_error_code(r, "refreshToken") == "[invalid]refreshToken",
        str(r.error_response),
    )
    r = expect_status(
        "exchange_refresh_token_for_jwt(missing)", anonymous.exchange_refresh_token_for_jwt({}), 400
    )
    check(
        "refresh(missing): field error",
        field_error_code(r, "refreshToken") == "[blank]refreshToken",
        str(r.error_response),
    )

    # --- retrieve --------------------------------------------------------------------------
    r = expect_status(
        "retrieve_refresh_token_by_id", client.retrieve_refresh_token_by_id(main_s["refreshTokenId"]), 200
    )
    token = r.success_response["refreshToken"]
    check("retrieve: id", token["id"] == main_s["refreshTokenId"], str(token))
    check("retrieve: userId", token["userId"] == main_s["userId"], str(token))
    check("retrieve: applicationId", token["applicationId"] == app_id, str(token))
    check("retrieve: token", token["token"] == main_s["refreshToken"], str(token))
    check("retrieve: tenantId", token.get("tenantId") == tenant_id, str(token))
    check("retrieve: startInstant", isinstance(token.get("startInstant"), int), str(token))
    check("retrieve: last access recorded", "lastAccessedInstant" in token["metaData"]["device"], str(token))
    expect_status(
        "retrieve_refresh_token_by_id(unknown)", client.retrieve_refresh_token_by_id(str(uuid.uuid4())), 404
    )
    expect_status(
        "retrieve_refresh_token_by_id(wrong key)",
        wrong_key.retrieve_refresh_token_by_id(main_s["refreshTokenId"]),
        401,
    )
    expect_status(
        "retrieve_refresh_token_by_id(tenant-locked key of another tenant)",
        locked.retrieve_refresh_token_by_id(main_s["refreshTokenId"]),
        404,
    )
    scoped = FusionAuthClient(api_key, base_url)
    scoped.set_tenant_id(other_tenant_id)
    expect_status(
        "retrieve_refresh_token_by_id(X-FusionAuth-TenantId of another tenant)",
        scoped.retrieve_refresh_token_by_id(main_s["refreshTokenId"]),
        404,
    )

    r = expect_status("retrieve_refresh_tokens", client.retrieve_refresh_tokens(main_s["userId"]), 200)
    ids = sorted(t["id"] for t in r.success_response["refreshTokens"])
    check(
        "retrieve_refresh_tokens lists the user's tokens",
        ids == sorted([main_s["refreshTokenId"], second["refreshTokenId"]]),
        str(ids),
    )
    r = expect_status(
        "retrieve_refresh_tokens(tenant-locked key)", locked.retrieve_refresh_tokens(main_s["userId"]), 200
    )
    check("a tenant-locked key sees no tokens of another tenant", r.success_response["refreshTokens"] == [])
    expect_status(
        "retrieve_refresh_tokens(wrong key)", wrong_key.retrieve_refresh_tokens(main_s["userId"]), 401
    )

    # --- issue -----------------------------------------------------------------------------
    r = expect_status(
        "issue_jwt(registered, with refresh token)",
        anonymous.issue_jwt(other_app_id, sso["token"], sso["refreshToken"]),
        200,
    )
    issued = claims_of(r.success_response["token"])
    check("issue: authenticationType", issued.get("authenticationType") == "JWT_SSO", str(issued))
    check("issue: applicationId", issued.get("applicationId") == other_app_id, str(issued))
    check("issue: same exp", issued["exp"] == claims_of(sso["token"])["exp"], str(issued))
    sso_refresh = r.success_response.get("refreshToken")
    check("issue: a refresh token for the target application", bool(sso_refresh), str(r.success_response))
    r = expect_status(
        "exchange_refresh_token_for_jwt(issued refresh token)",
        anonymous.exchange_refresh_token_for_jwt({"refreshToken": sso_refresh}),
        200,
    )
    check(
        "the issued refresh token is for the target application",
        claims_of(r.success_response["token"]).get("applicationId") == other_app_id,
    )
    r = expect_status(
        "issue_jwt(registered, no refresh token)", anonymous.issue_jwt(other_app_id, sso["token"]), 200
    )
    check("issue without a refresh token returns none", "refreshToken" not in r.success_response)
    r = expect_status(
        "issue_jwt(not registered)", anonymous.issue_jwt(other_app_id, main_s["token"]), 202
    )
    check("issue(not registered): no applicationId", "applicationId" not in claims_of(r.success_response["token"]))
    expect_status("issue_jwt(garbage token)", anonymous.issue_jwt(app_id, "not.a.jwt"), 401)

    # --- vend ------------------------------------------------------------------------------
    r = expect_status(
        "vend_jwt",
        client.vend_jwt(
            {"claims": {"foo": "bar", "exp": 1, "iat": 2}, "timeToLiveInSeconds": 60}
        ),
        200,
    )
    vended = r.success_response["token"]
    claims = claims_of(vended)
    check("vend: claims kept", claims.get("foo") == "bar", str(claims))
    check("vend: exp/iat set by the server", claims["exp"] - claims["iat"] == 60, str(claims))
    check("vend: issuer", claims.get("iss") == issuer, str(claims))
    r = expect_status("validate_jwt(vended)", anonymous.validate_jwt(vended), 200)
    check("validate(vended): claims", r.success_response["jwt"].get("foo") == "bar")
    r = expect_status("vend_jwt(ttl 0)", client.vend_jwt({"timeToLiveInSeconds": 0}), 400)
    check(
        "vend(ttl 0): field error",
        field_error_code(r, "timeToLiveInSeconds") == "[invalid]timeToLiveInSeconds",
        str(r.error_response),
    )
    r = expect_status("vend_jwt(keyId)", client.vend_jwt({"keyId": rsa_kid, "claims": {"a": 1}}), 200)
    r = expect_status("vend_jwt(unknown keyId)", client.vend_jwt({"keyId": str(uuid.uuid4())}), 400)
    check("vend(unknown keyId): field error", field_error_code(r, "keyId") == "[invalid]keyId")
    expect_status("vend_jwt(wrong key)", wrong_key.vend_jwt({}), 401)
    r = expect_status("vend_jwt(tenant-locked key)", locked.vend_jwt({"claims": {"a": 1}}), 200)
    check("vend(tenant-locked key): its tenant's issuer", claims_of(r.success_response["token"])["iss"] != issuer)

    # --- revoke ----------------------------------------------------------------------------
    # by id
    expect_status(
        "revoke_refresh_token_by_id", client.revoke_refresh_token_by_id(second["refreshTokenId"]), 200
    )
    expect_status(
        "retrieve after revoke_refresh_token_by_id",
        client.retrieve_refresh_token_by_id(second["refreshTokenId"]),
        404,
    )
    expect_status(
        "refresh after revoke_refresh_token_by_id",
        anonymous.exchange_refresh_token_for_jwt({"refreshToken": second["refreshToken"]}),
        400,
    )
    expect_status("validate after revoke_refresh_token_by_id", anonymous.validate_jwt(second["token"]), 401)
    expect_status(
        "revoke_refresh_token_by_id(unknown)", client.revoke_refresh_token_by_id(str(uuid.uuid4())), 404
    )

    # by value
    expect_status("revoke_refresh_token(token)", client.revoke_refresh_token(token=main_s["refreshToken"]), 200)
    expect_status(
        "refresh after revoke_refresh_token(token)",
        anonymous.exchange_refresh_token_for_jwt({"refreshToken": main_s["refreshToken"]}),
        400,
    )
    expect_status("validate after revoke_refresh_token(token)", anonymous.validate_jwt(main_s["token"]), 401)
    expect_status(
        "validate(refreshed) after revoke_refresh_token(token)", anonymous.validate_jwt(refreshed["token"]), 401
    )
    expect_status(
        "revoke_refresh_token_by_token",
        client.revoke_refresh_token_by_token(carol["refreshToken"]),
        200,
    )
    expect_status(
        "refresh after revoke_refresh_token_by_token",
        anonymous.exchange_refresh_token_for_jwt({"refreshToken": carol["refreshToken"]}),
        400,
    )

    # by user
    expect_status("revoke_refresh_token(user_id)", client.revoke_refresh_token(user_id=dave["userId"]), 200)
    r = expect_status("retrieve_refresh_tokens after revoke by user", client.retrieve_refresh_tokens(dave["userId"]), 200)
    check("no tokens left for the user", r.success_response["refreshTokens"] == [], str(r.success_response))
    expect_status("validate after revoke by user", anonymous.validate_jwt(dave["token"]), 401)

    # by user and application
    expect_status(
        "revoke_refresh_tokens_by_user_id_for_application",
        client.revoke_refresh_tokens_by_user_id_for_application(sso["userId"], app_id),
        200,
    )
    expect_status(
        "the sso user's token for the application is gone",
        client.retrieve_refresh_token_by_id(sso["refreshTokenId"]),
        404,
    )
    expect_status(
        "the sso user's token for the other application is kept",
        client.retrieve_refresh_token_by_id(sso_other["refreshTokenId"]),
        200,
    )

    # with a JSON body
    expect_status(
        "revoke_refresh_tokens_with_request(token)",
        client.revoke_refresh_tokens_with_request({"token": erin["refreshToken"]}),
        200,
    )
    expect_status(
        "refresh after revoke_refresh_tokens_with_request",
        anonymous.exchange_refresh_token_for_jwt({"refreshToken": erin["refreshToken"]}),
        400,
    )

    # no parameters
    r = expect_status("revoke_refresh_token()", client.revoke_refresh_token(), 400)
    check("revoke(): Errors JSON", bool(r.error_response), str(r.error_response))
    # wrong key, tenant-locked key of another tenant
    expect_status("revoke_refresh_token(wrong key)", wrong_key.revoke_refresh_token(user_id=frank["userId"]), 401)
    expect_status(
        "revoke_refresh_token(tenant-locked key)", locked.revoke_refresh_token(user_id=frank["userId"]), 404
    )
    # the owner's JWT, by id
    owner = FusionAuthClient("Bearer " + frank["token"], base_url)
    expect_status(
        "revoke_refresh_token_by_id(someone else's token, JWT)",
        owner.revoke_refresh_token_by_id(sso_other["refreshTokenId"]),
        401,
    )

    # by application (last: it revokes every token of the other application)
    expect_status(
        "revoke_refresh_token(application_id)",
        client.revoke_refresh_token(application_id=other_app_id),
        200,
    )
    expect_status(
        "retrieve after revoke by application",
        client.retrieve_refresh_token_by_id(sso_other["refreshTokenId"]),
        404,
    )
    expect_status(
        "refresh after revoke by application",
        anonymous.exchange_refresh_token_for_jwt({"refreshToken": sso_refresh}),
        400,
    )
    expect_status(
        "revoke_refresh_tokens_by_application_id(unknown)",
        client.revoke_refresh_tokens_by_application_id(str(uuid.uuid4())),
        404,
    )

    expect_status(
        "revoke_refresh_token_by_id(own token, JWT)",
        owner.revoke_refresh_token_by_id(frank["refreshTokenId"]),
        200,
    )
    expect_status(
        "retrieve after revoke by the owner", client.retrieve_refresh_token_by_id(frank["refreshTokenId"]), 404
    )


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
    print("all FusionAuth client checks passed")
