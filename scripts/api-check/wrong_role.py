"""schemathesis hook for the wrong-role runs of scripts/api-check.sh.

`wrong_role_refused`: an operation whose bearer requirement names roles (the scopes of
`security`) must answer 401 or 403 to a token of any other role. The token's role is read from
the token itself (its payload's `role` claim); only the script's control run, which proves
the check can fail, overrides it with HALO_CLAIMED_ROLE.
"""

import base64
import json
import os

import schemathesis


def _token_role() -> str:
    token = os.environ["HALO_WRONG_TOKEN"]
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))["role"]


ROLE = os.environ.get("HALO_CLAIMED_ROLE") or _token_role()


@schemathesis.check
def wrong_role_refused(ctx, response, case):
    security = case.operation.definition.raw.get("security") or []
    roles = {role for requirement in security for role in requirement.get("bearer", [])}
    if roles and ROLE not in roles and response.status_code not in (401, 403):
        raise AssertionError(
            f"a {ROLE} token on a route for {sorted(roles)} answered {response.status_code}, "
            "expected 401 or 403"
        )
