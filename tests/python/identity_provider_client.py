"""Drives Gatehouse's identity-provider API with FusionAuth's official Python client
(fusionauth-client), unchanged.

Run by tests/it/python_idp.rs against a running gateway. Everything comes from the environment:

  GATEHOUSE_URL        base URL of the gateway, e.g. http://127.0.0.1:9011
  GATEHOUSE_API_KEY    a global API key
  GATEHOUSE_APP_ID     the application logins are for (default role "user")

The external provider signs with an HMAC secret made here (HS256 in plain Python, so nothing
beyond the client is needed). Exits 0 when every check passes; otherwise prints the first failed
check and exits 1.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
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
    body = response.success_response if response.success_response is not None else response.error_response
    if body is None and response.response is not None:
        body = response.response.text
    return f"status {response.status}, body {body!r}"


def expect_status(what, response, status):
    if response.status != status:
        raise CheckFailed(f"{what}: expected status {status}, got {describe(response)}")
    return response


def check(what, condition, detail=""):
    if not condition:
        raise CheckFailed(f"{what} {detail}".strip())


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(secret, kid, claims):
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64url(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


def claims_of(token):
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def main():
    base_url = env("GATEHOUSE_URL")
    api_key = env("GATEHOUSE_API_KEY")
    app_id = env("GATEHOUSE_APP_ID")

    client = FusionAuthClient(api_key, base_url)
    anonymous = FusionAuthClient(None, base_url)
    secret = secrets.token_urlsafe(32)
    now = int(time.time())

    def token(sub, email=None, **extra):
        claims = {"sub": sub, "iat": now, "exp": now + 600}
        if email:
            claims["email"] = email
        claims.update(extra)
        return hs256(secret, "py", claims)

    # --- providers ----------------------------------------------------------------------
    expect_status("create_identity_provider without an API key",
                  anonymous.create_identity_provider({"identityProvider": {}}), 401)
    r = expect_status("create_identity_provider (invalid)",
                      client.create_identity_provider({"identityProvider": {"type": "ExternalJWT"}}), 400)
    check("validation names the missing name",
          "identityProvider.name" in r.error_response.get("fieldErrors", {}), str(r.error_response))

    r = expect_status("create_identity_provider", client.create_identity_provider({"identityProvider": {
        "name": "Python ADFS", "type": "ExternalJWT", "enabled": True, "headerKeyParameter": "kid",
        "keys": {"py": secret}, "linkingStrategy": "LinkByEmail",
        "claimMap": {"given_name": "firstName"},
        "applicationConfiguration": {app_id: {"enabled": True, "createRegistration": True}},
        "oauth2": {"token_endpoint": "https://py.example/token"},
    }}), 200)
    idp = r.success_response["identityProvider"]["id"]
    check("the secret is not returned", r.success_response["identityProvider"]["keys"]["py"] == "********")

    pending_idp = str(uuid.uuid4())
    r = expect_status("create_identity_provider(id)", client.create_identity_provider({"identityProvider": {
        "name": "Python pending", "type": "ExternalJWT", "enabled": True, "headerKeyParameter": "kid",
        "keys": {"py": secret}, "linkingStrategy": "CreatePendingLink",
        "applicationConfiguration": {app_id: {"enabled": True}},
    }}, pending_idp), 200)
    check("the given id is used", r.success_response["identityProvider"]["id"] == pending_idp)

    r = expect_status("retrieve_identity_provider", client.retrieve_identity_provider(idp), 200)
    check("retrieve_identity_provider name", r.success_response["identityProvider"]["name"] == "Python ADFS")
    r = expect_status("retrieve_identity_providers", client.retrieve_identity_providers(), 200)
    check("retrieve_identity_providers lists both", len(r.success_response["identityProviders"]) == 2)
    r = expect_status("retrieve_identity_provider_by_type",
                      client.retrieve_identity_provider_by_type("ExternalJWT"), 200)
    check("by type lists both", len(r.success_response["identityProviders"]) == 2)

    r = expect_status("patch_identity_provider", client.patch_identity_provider(idp, {"identityProvider": {
        "debug": True, "domains": ["py.example"]}}), 200)
    check("patch merged", r.success_response["identityProvider"]["debug"] is True
          and r.success_response["identityProvider"]["domains"] == ["py.example"]
          and r.success_response["identityProvider"]["claimMap"] == {"given_name": "firstName"})
    r = expect_status("patch_identity_provider appends arrays", client.patch_identity_provider(idp, {
        "identityProvider": {"domains": ["py2.example"]}}), 200)
    check("domains appended", r.success_response["identityProvider"]["domains"] == ["py.example", "py2.example"])

    current = client.retrieve_identity_provider(idp).success_response
    current["identityProvider"]["name"] = "Python ADFS (updated)"
    r = expect_status("update_identity_provider", client.update_identity_provider(idp, current), 200)
    check("update_identity_provider renamed", r.success_response["identityProvider"]["name"] == "Python ADFS (updated)")

    r = expect_status("search_identity_providers", client.search_identity_providers({"search": {
        "name": "python*", "type": "ExternalJWT", "applicationId": app_id, "orderBy": "name DESC",
        "numberOfResults": 1}}), 200)
    found = r.success_response["identityProviders"]
    check("search pages and orders", r.success_response["total"] == 2 and len(found) == 1
          and found[0]["name"] == "Python pending", str(r.success_response))
    check("search redacts secrets", found[0]["keys"]["py"] == "********")
    r = expect_status("search_identity_providers (start row)", client.search_identity_providers({"search": {
        "name": "ADFS", "startRow": 0}}), 200)
    check("search by part of the name", [p["id"] for p in r.success_response["identityProviders"]] == [idp])
    expect_status("search_identity_providers (bad orderBy)", client.search_identity_providers({"search": {
        "orderBy": "keys ASC"}}), 400)

    r = expect_status("lookup_identity_provider", client.lookup_identity_provider("ann@py.example"), 200)
    check("lookup finds the provider", r.success_response["identityProvider"]["id"] == idp)
    expect_status("lookup_identity_provider (unmanaged)", client.lookup_identity_provider("nobody.example"), 404)

    # --- login and reconcile ------------------------------------------------------------
    r = expect_status("identity_provider_login", anonymous.identity_provider_login({
        "applicationId": app_id, "identityProviderId": idp, "ipAddress": "192.0.2.10",
        "encodedJWT": token("py-ext-1", "ann@py.example", given_name="Ann"),
        "metaData": {"device": {"name": "python", "type": "SERVER"}},
    }), 200)
    login = r.success_response
    user_id = login["user"]["id"]
    check("login answers the user", login["user"]["email"] == "ann@py.example" and login["user"]["firstName"] == "Ann")
    check("login answers tokens", login.get("token") and login.get("refreshToken") and login.get("refreshTokenId"))
    claims = claims_of(login["token"])
    check("the token is FEDERATED_JWT", claims["authenticationType"] == "FEDERATED_JWT", str(claims))
    check("the token's sid is the refresh token id", claims["sid"] == login["refreshTokenId"])
    check("the user is registered with the default role",
          login["user"]["registrations"][0]["roles"] == ["user"], str(login["user"]))

    r = expect_status("identity_provider_login (bad signature)", anonymous.identity_provider_login({
        "applicationId": app_id, "identityProviderId": idp,
        "encodedJWT": hs256("wrong-secret", "py", {"sub": "x", "exp": now + 60}),
    }), 401)
    expect_status("identity_provider_login (noLink, no link)", anonymous.identity_provider_login({
        "applicationId": app_id, "identityProviderId": idp, "noLink": True,
        "encodedJWT": token("py-unlinked", "zed@py.example"),
    }), 404)

    r = expect_status("reconcile_jwt", anonymous.reconcile_jwt({
        "applicationId": app_id, "identityProviderId": idp,
        "data": {"token": token("py-ext-1", "ann@py.example")},
    }), 200)
    check("reconcile_jwt finds the same user", r.success_response["user"]["id"] == user_id)
    r = expect_status("reconcile_jwt (noJWT)", anonymous.reconcile_jwt({
        "applicationId": app_id, "identityProviderId": idp, "noJWT": True,
        "encodedJWT": token("py-ext-1", "ann@py.example"),
    }), 200)
    check("noJWT issues no token", "token" not in r.success_response)

    r = expect_status("retrieve_user", client.retrieve_user(user_id), 200)
    check("retrieve_user", r.success_response["user"]["email"] == "ann@py.example")
    r = expect_status("retrieve_user_by_email", client.retrieve_user_by_email("ann@py.example"), 200)
    check("retrieve_user_by_email", r.success_response["user"]["id"] == user_id)

    # --- links --------------------------------------------------------------------------
    r = expect_status("create_user_link", client.create_user_link({"identityProviderLink": {
        "identityProviderId": idp, "identityProviderUserId": "py-ext-2", "userId": user_id,
        "displayName": "second identity"}}), 200)
    check("create_user_link", r.success_response["identityProviderLink"]["identityProviderUserId"] == "py-ext-2")
    r = expect_status("retrieve_user_link", client.retrieve_user_link(idp, "py-ext-2", user_id), 200)
    check("retrieve_user_link", r.success_response["identityProviderLink"]["displayName"] == "second identity")
    r = expect_status("retrieve_user_links_by_user_id", client.retrieve_user_links_by_user_id(user_id), 200)
    check("two links", len(r.success_response["identityProviderLinks"]) == 2, str(r.success_response))
    r = expect_status("retrieve_user_links_by_user_id(idp)", client.retrieve_user_links_by_user_id(user_id, idp), 200)
    check("two links to the provider", len(r.success_response["identityProviderLinks"]) == 2)

    r = expect_status("identity_provider_login (pending)", anonymous.identity_provider_login({
        "applicationId": app_id, "identityProviderId": pending_idp,
        "encodedJWT": token("py-pending", "ann@py.example"),
    }), 200)
    pending_id = r.success_response.get("pendingIdPLinkId")
    check("a pending link id", bool(pending_id), str(r.success_response))
    r = expect_status("retrieve_pending_link", client.retrieve_pending_link(pending_id, user_id), 200)
    check("retrieve_pending_link", r.success_response["pendingIdPLink"]["identityProviderUserId"] == "py-pending"
          and r.success_response["linkCount"] == 0, str(r.success_response))
    r = expect_status("create_user_link (pending)", client.create_user_link({
        "pendingIdPLinkId": pending_id, "identityProviderLink": {"userId": user_id}}), 200)
    check("the pending link was completed", r.success_response["identityProviderLink"]["identityProviderId"] == pending_idp)
    r = expect_status("identity_provider_login (after linking)", anonymous.identity_provider_login({
        "applicationId": app_id, "identityProviderId": pending_idp,
        "encodedJWT": token("py-pending", "ann@py.example"),
    }), 200)
    check("the linked user logs in", r.success_response["user"]["id"] == user_id)

    r = expect_status("delete_user_link", client.delete_user_link(idp, "py-ext-2", user_id), 200)
    expect_status("retrieve_user_link (deleted)", client.retrieve_user_link(idp, "py-ext-2", user_id), 404)

    # --- lambdas and debug events -------------------------------------------------------
    r = expect_status("create_lambda", client.create_lambda({"lambda": {
        "name": "py reconcile", "type": "ExternalJWTReconcile",
        "body": "function reconcile(user, registration, jwt) { user.data = user.data || {}; user.data.py = true; }"}}), 200)
    lambda_id = r.success_response["lambda"]["id"]
    expect_status("retrieve_lambda", client.retrieve_lambda(lambda_id), 200)
    r = expect_status("retrieve_lambdas_by_type", client.retrieve_lambdas_by_type("ExternalJWTReconcile"), 200)
    check("one lambda", len(r.success_response["lambdas"]) == 1)
    expect_status("patch_identity_provider (lambda)", client.patch_identity_provider(idp, {
        "identityProvider": {"lambdaConfiguration": {"reconcileId": lambda_id}}}), 200)
    r = expect_status("reconcile_jwt (lambda)", anonymous.reconcile_jwt({
        "applicationId": app_id, "identityProviderId": idp,
        "data": {"token": token("py-ext-1", "ann@py.example")}}), 200)
    check("the lambda ran", r.success_response["user"]["data"].get("py") is True, str(r.success_response["user"]))

    r = expect_status("search_event_logs", client.search_event_logs({"search": {
        "message": "External JWT login", "type": "Debug", "numberOfResults": 5}}), 200)
    check("debug events were written", r.success_response["total"] >= 1, str(r.success_response))
    event_id = r.success_response["eventLogs"][0]["id"]
    expect_status("retrieve_event_log", client.retrieve_event_log(event_id), 200)

    # --- deletes ------------------------------------------------------------------------
    expect_status("delete_lambda (in use)", client.delete_lambda(lambda_id), 400)
    expect_status("delete_identity_provider", client.delete_identity_provider(idp), 200)
    expect_status("retrieve_identity_provider (deleted)", client.retrieve_identity_provider(idp), 404)
    expect_status("delete_lambda", client.delete_lambda(lambda_id), 200)
    expect_status("delete_identity_provider (pending)", client.delete_identity_provider(pending_idp), 200)
    r = expect_status("retrieve_user_links_by_user_id (after deletes)", client.retrieve_user_links_by_user_id(user_id), 200)
    check("links went with their providers", r.success_response["identityProviderLinks"] == [], str(r.success_response))


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as e:
        print(f"FAILED: {e}")
        sys.exit(1)
    print("identity provider client: all checks passed")
