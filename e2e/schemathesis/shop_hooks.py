"""Schemathesis hooks for the OpenAPI contract test (e2e/tests/openapi_contract.rs).

Two things a document cannot say, and a real client does anyway:

- An `Idempotency-Key` names one order. Generated requests reuse short keys ("0", "null")
  with other bodies, which the Order Service rightly refuses (422, as the IETF draft says).
  Every well-formed key is made unique per request; malformed ones are left as generated, so
  their refusal is still tested.
- Each SKU may appear on one line of an order only. JSON Schema cannot state uniqueness of
  one property across an array's objects, so the generated valid orders are given each SKU
  once (the first line wins). The rule itself is tested in services/order-service/tests.
"""

import re
import uuid

import schemathesis

VISIBLE_ASCII = re.compile(r"^[!-~]{1,255}$")


def _name(value):
    return str(getattr(value, "value", value)).lower()


def _body_is_valid(case):
    """Whether the case's body was generated to match the schema (not to break it)."""
    meta = getattr(case, "meta", None) or getattr(case, "_meta", None)
    if meta is None:
        return False
    body = next((info for where, info in meta.components.items() if _name(where) == "body"), None)
    mode = body.mode if body is not None else meta.generation.mode
    return _name(mode) == "positive"


@schemathesis.hook
def before_call(ctx, case, kwargs):
    headers = case.headers or {}
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and VISIBLE_ASCII.match(key):
        headers["Idempotency-Key"] = f"{key[:200]}-{uuid.uuid4().hex}"

    body = case.body
    if not (_body_is_valid(case) and isinstance(body, dict) and isinstance(body.get("items"), list)):
        return
    seen, lines = set(), []
    for line in body["items"]:
        sku = line.get("sku") if isinstance(line, dict) else None
        if sku is None or sku not in seen:
            lines.append(line)
            seen.add(sku)
    body["items"] = lines
