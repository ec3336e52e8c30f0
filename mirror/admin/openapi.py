"""The OpenAPI 3.1 document of the admin API, built in code beside the routes it describes.

Built rather than kept as a static file so it cannot drift silently: the contract test
checks that its paths are exactly the routes of ``mirror.admin.api`` and validates real
responses against the schemas here.
"""

import copy
from functools import cache
from typing import Any

from mirror import __version__
from quarantine.admin import MIN_REASON
from quarantine.paging import DEFAULT_LIMIT, MAX_LIMIT

JsonSchema = dict[str, Any]

# Limits the handlers enforce, stated once here where the contract is written down.
MAX_REASON = 1000
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # token names

TIME: JsonSchema = {"type": "string", "format": "date-time"}
OPTIONAL_TIME: JsonSchema = {"type": ["string", "null"], "format": "date-time"}
OPTIONAL_TEXT: JsonSchema = {"type": ["string", "null"]}
TEXT: JsonSchema = {"type": "string"}


def _ref(name: str) -> JsonSchema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, JsonSchema], *, optional: tuple[str, ...] = ()) -> JsonSchema:
    """A closed object: every property required unless named in ``optional``."""
    return {
        "type": "object",
        "properties": properties,
        "required": [key for key in properties if key not in optional],
        "additionalProperties": False,
    }


def _list_of(key: str, item: str, **more: JsonSchema) -> JsonSchema:
    return _object({key: {"type": "array", "items": _ref(item)}, **more})


LEFT_OUT: JsonSchema = {
    "type": "integer",
    "minimum": 0,
    "description": "How many more rows matched beyond `limit`: raise it, or narrow the query.",
}
SINCE: JsonSchema = {
    "type": "string",
    "description": "A duration before now (2h, 7d, 1d12h, P3D) or an RFC 3339 time.",
    "examples": ["2h", "7d", "2026-11-23T12:00:00Z"],
}
REASON: JsonSchema = {
    "type": "string",
    "minLength": MIN_REASON,
    "maxLength": MAX_REASON,
    "description": "Why; it goes on record with the decision (at least 10 characters).",
}
FILE_STATE: JsonSchema = {
    "type": "string",
    "enum": ["held", "review", "promoted", "rejected", "blocked", "withdrawn"],
}


def _result_schemas() -> dict[str, JsonSchema]:
    finding = _object(
        {
            "rule": TEXT,
            "severity": TEXT,
            "message": TEXT,
            "path": OPTIONAL_TEXT,
            "line": {"type": ["integer", "null"]},
        }
    )
    check = _object(
        {
            "check": TEXT,
            "action": TEXT,
            "summary": TEXT,
            "findings": {"type": "array", "items": _ref("Finding")},
            "details": {"type": "object"},
        }
    )
    explained_file = _object(
        {
            "filename": TEXT,
            "version": TEXT,
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "state": FILE_STATE,
            "reason": TEXT,
            "established": {"type": "boolean"},
            "deferral": {
                "type": ["string", "null"],
                "enum": ["until-download", "downloaded", None],
                "description": (
                    "until-download: a superseded release's file, listed and vetted when "
                    "first downloaded; downloaded: a client's download had it vetted."
                ),
            },
            "upload_time": OPTIONAL_TIME,
            "hold_until": OPTIONAL_TIME,
            "cooling_period": {
                "type": "string",
                "description": "The project's cooling period in force (72h, 3d, 1w...).",
            },
            "anomaly": OPTIONAL_TEXT,
            "stored": {"type": "boolean"},
            "checks": {"type": "array", "items": _ref("Check")},
        }
    )
    return {
        "Hold": _object(
            {
                "project": TEXT,
                "version": TEXT,
                "filename": TEXT,
                "state": {"type": "string", "enum": ["held", "review"]},
                "reason": TEXT,
                "hold_until": OPTIONAL_TIME,
            }
        ),
        "HoldList": _list_of("holds", "Hold"),
        "Finding": finding,
        "Check": check,
        "ExplainedFile": explained_file,
        "Explanation": _object(
            {
                "project": TEXT,
                "status": TEXT,
                "files": {
                    "type": "array",
                    "items": _ref("ExplainedFile"),
                    "description": "Newest release first (PEP 440 order); files whose "
                    "release cannot be read last, by filename. A release's rejected files "
                    "are included, with the reason. Every file has a `feeds` check, which "
                    "says `not-checked` when no malware feed is configured or loaded.",
                },
                "left_out": LEFT_OUT,
            }
        ),
        "Event": _object(
            {
                "at": TIME,
                "project": TEXT,
                "filename": OPTIONAL_TEXT,
                "sha256": OPTIONAL_TEXT,
                "from_state": OPTIONAL_TEXT,
                "to_state": TEXT,
                "reason": TEXT,
                "actor": TEXT,
            }
        ),
        "EventList": _list_of("events", "Event", truncated={"type": "boolean"}, left_out=LEFT_OUT),
        "Delivery": _object(
            {
                "event_id": TEXT,
                "channel": TEXT,
                "state": {"type": "string", "enum": ["pending", "delivered", "dead"]},
                "attempts": {"type": "integer", "minimum": 0},
                "next_attempt_at": OPTIONAL_TIME,
                "last_error": OPTIONAL_TEXT,
            }
        ),
        "DeliveryList": _list_of("deliveries", "Delivery"),
        "Change": _object({"filename": TEXT, "before": FILE_STATE, "after": FILE_STATE}),
        "Decision": _list_of("changes", "Change", etag=TEXT),
        "ExemptionResult": _object(
            {"project": TEXT, "exempt": {"type": "boolean"}, "until": OPTIONAL_TIME}
        ),
        "CutoffResult": _object({"cutoff": OPTIONAL_TIME}),
        "TokenCreated": _object(
            {
                "name": TEXT,
                "scope": {"type": "string", "enum": ["read", "decide", "index:read"]},
                "token": {"type": "string", "description": "Shown once; only its hash is kept."},
            }
        ),
        "TokenRevoked": _object({"name": TEXT, "revoked": {"const": True}}),
        **_incident_schemas(),
    }


def _incident_schemas() -> dict[str, JsonSchema]:
    count = {"type": "integer", "minimum": 0}
    summary = _object({"downloads": count, "clients": count, "first": OPTIONAL_TIME,
                       "last": OPTIONAL_TIME})  # fmt: skip
    texts = ("project", "version", "filename", "client", "installer", "installer_version",
             "python", "implementation", "system", "distro", "cpu")  # fmt: skip
    row = _object(
        {
            **dict.fromkeys(texts, TEXT),
            "identity": {**OPTIONAL_TEXT, "description": "The index token's name, if any."},
            "ci": {"type": "boolean"},
            "downloads": count,
            "first": TIME,
            "last": TIME,
        }
    )
    pin = _object(
        {
            "project": TEXT,
            "version": TEXT,
            "state": {
                "type": "string",
                "enum": ["served", "held", "blocked", "withdrawn", "unknown"],
            },
            "detail": {"type": "string", "description": "Why; until when for a held pin."},
            "files": {"type": "array", "items": TEXT},
            "where": TEXT,
        }
    )
    return {
        "ExposureSummary": summary,
        "ExposureRow": row,
        "Exposure": _object(
            {
                "project": TEXT,
                "version": OPTIONAL_TEXT,
                "summary": _ref("ExposureSummary"),
                "downloads": {
                    "type": "array",
                    "items": _ref("ExposureRow"),
                    "description": "Per file and client (address, identity, installer), "
                    "the most recent first.",
                },
                "download_log": {"type": "boolean", "description": "False: the log is off."},
            }
        ),
        "LockPin": pin,
        "LockCheck": _object(
            {
                "kind": {
                    "type": "string",
                    "enum": ["requirements", "uv.lock", "poetry.lock", "pylock.toml"],
                },
                "pins": {"type": "array", "items": _ref("LockPin")},
                "skipped": {"type": "array", "items": TEXT},
                "failing": {**count, "description": "Pins withdrawn or blocked."},
            }
        ),
    }


def _body_schemas() -> dict[str, JsonSchema]:
    return {
        "ReasonBody": _object({"reason": REASON}),
        "PromoteBody": _object(
            {
                "reason": REASON,
                "force": {
                    "type": "boolean",
                    "default": False,
                    "description": "Needed to promote over a block.",
                },
            },
            optional=("force",),
        ),
        "RetryBody": _object(
            {
                "reason": REASON,
                "filename": {
                    "type": "string",
                    "description": "Only this file of the project or release.",
                },
            },
            optional=("filename",),
        ),
        "ExemptionBody": _object({"reason": REASON, "until": OPTIONAL_TIME}, optional=("until",)),
        "CutoffBody": _object(
            {
                "time": {**TIME, "description": "Nothing uploaded after this is promoted."},
                "reason": REASON,
            }
        ),
        "LockBody": _object(
            {
                "name": {
                    "type": "string",
                    "description": "The lock's file name: uv.lock, poetry.lock, pylock.toml, "
                    "or anything else for requirements.txt syntax.",
                },
                "text": {"type": "string", "description": "The lock file's contents."},
            }
        ),
        "TokenBody": _object(
            {
                "name": {"type": "string", "pattern": NAME_PATTERN},
                "scope": {"type": "string", "enum": ["read", "decide", "index:read"]},
            }
        ),
    }


def _problem_schemas() -> dict[str, JsonSchema]:
    current_file = _object(
        {
            "filename": TEXT,
            "version": TEXT,
            "state": FILE_STATE,
            "state_version": {"type": "integer"},
        }
    )
    return {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details; detail is one ASCII line.",
            "properties": {
                "type": {"type": "string", "const": "about:blank"},
                "title": TEXT,
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string", "pattern": "^[ -~]*$", "maxLength": 300},
                "code": {"type": "string", "enum": ["conflict", "not-yet-stored"]},
                "etag": {"type": "string", "description": "The current ETag (409, 412)."},
                "files": {
                    "type": "array",
                    "items": _ref("CurrentFile"),
                    "description": "The current state of the release's files (409, 412).",
                },
            },
            "required": ["type", "title", "status", "detail"],
        },
        "CurrentFile": current_file,
    }


_PROBLEM_CONTENT = {"application/problem+json": {"schema": _ref("Problem")}}
_ERRORS: dict[str, tuple[str, dict[str, Any]]] = {
    "400": ("The body is not JSON, or the project or version asked about is not one.", {}),
    "401": (
        "No token, or a malformed, unknown or revoked one.",
        {"WWW-Authenticate": {"schema": TEXT, "description": "Bearer challenge (RFC 6750)."}},
    ),
    "403": ("The token's scope does not allow this.", {}),
    "404": ("No such project, release, setting or token.", {}),
    "409": ("The transition is not allowed from the current state, or lost a race.", {}),
    "412": ("If-Match does not match the current ETag.", {}),
    "413": ("The body is too large.", {}),
    "422": ("A field is missing or invalid (a reason under 10 characters, say).", {}),
    "429": (
        "Too many failed authentications from this address.",
        {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
    ),
}


def _error_responses() -> dict[str, Any]:
    return {
        code: {"description": text, "headers": headers, "content": _PROBLEM_CONTENT}
        for code, (text, headers) in _ERRORS.items()
    }


def _parameters() -> dict[str, Any]:
    def path(name: str, text: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": TEXT, "description": text}

    def query(name: str, schema: JsonSchema, text: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "schema": schema,
            "description": text,
        }

    return {
        "project": path("project", "Project name (normalised by the server)."),
        "version": path("version", "Release version (PEP 440)."),
        "tokenName": path("name", "Token name."),
        "ifMatch": {
            "name": "If-Match",
            "in": "header",
            "required": False,
            "schema": TEXT,
            "description": "The ETag from GET /projects/{project}: refuse (412) if it changed.",
        },
        "projectFilter": query("project", TEXT, "Only this project."),
        "holdState": query("state", {"type": "string", "enum": ["held", "review"]}, "Only this."),
        "versionFilter": query(
            "version", TEXT, "Only this release: one exact PEP 440 version (else 400)."
        ),
        "since": query("since", SINCE, "Only events at or after this time."),
        "projectName": {**query("project", TEXT, "The project."), "required": True},
        "downloadsSince": query("since", SINCE, "Only downloads at or after this time."),
        "seenSince": query("since", SINCE, "Only files the mirror first saw at or after it."),
        "limit": query("limit", LIMIT, "At most this many of the latest events."),
        "fileLimit": query("limit", LIMIT, "At most this many files, newest releases first."),
        "deliveryState": query(
            "state", {"type": "string", "enum": ["pending", "delivered", "dead"]}, "Only this."
        ),
    }


LIMIT: JsonSchema = {
    "type": "integer",
    "minimum": 1,
    "maximum": MAX_LIMIT,
    "default": DEFAULT_LIMIT,
}
_STATUS_ERRORS = {
    "read": ("401", "403", "404", "422", "429"),
    "decide": ("400", "401", "403", "404", "409", "412", "413", "422", "429"),
}


def _operation(
    operation_id: str,
    summary: str,
    scope: str,
    ok: tuple[str, str],
    *,
    params: tuple[str, ...] = (),
    body: str | None = None,
    errors: tuple[str, ...] = (),
) -> dict[str, Any]:
    status, schema = ok
    responses: dict[str, Any] = {
        status: {
            "description": "Done.",
            "content": {"application/json": {"schema": _ref(schema)}},
        }
    }
    if "ifMatch" in params or operation_id == "showProject":
        responses[status]["headers"] = {"ETag": {"$ref": "#/components/headers/ETag"}}
    responses |= {
        code: {"$ref": f"#/components/responses/E{code}"}
        for code in sorted({*_STATUS_ERRORS[scope], *errors})
    }
    found: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "description": f"Needs a token with the `{scope}` scope.",
        "x-required-scope": scope,
        "security": [{"bearer": []}],
        "parameters": [{"$ref": f"#/components/parameters/{name}"} for name in params],
        "responses": responses,
    }
    if body is not None:
        found["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return found


def _release_decision(op_id: str, summary: str, body: str = "ReasonBody") -> dict[str, Any]:
    params = ("project", "version", "ifMatch")
    return _operation(op_id, summary, "decide", ("200", "Decision"), params=params, body=body)


def _project_decision(op_id: str, summary: str, body: str = "ReasonBody") -> dict[str, Any]:
    params = ("project", "ifMatch")
    return _operation(op_id, summary, "decide", ("200", "Decision"), params=params, body=body)


def _paths() -> dict[str, Any]:
    release = "/projects/{project}/releases/{version}"
    exemption = ("project", "ifMatch")
    return {
        "/holds": {
            "get": _operation(
                "listHolds", "Everything held", "read", ("200", "HoldList"),
                params=("projectFilter", "holdState"),
            )
        },
        "/projects/{project}": {
            "get": _operation(
                "showProject", "Why each file is where it is", "read", ("200", "Explanation"),
                params=("project", "versionFilter", "seenSince", "fileLimit"), errors=("400",),
            )
        },
        "/audit": {
            "get": _operation(
                "listAudit", "Recorded changes", "read", ("200", "EventList"),
                params=("projectFilter", "since", "limit"),
            )
        },
        "/deliveries": {
            "get": _operation(
                "listDeliveries", "Notification deliveries", "read", ("200", "DeliveryList"),
                params=("deliveryState",),
            )
        },
        "/exposure": {
            "get": _operation(
                "showExposure", "Who downloaded a project or release", "read",
                ("200", "Exposure"), params=("projectName", "versionFilter", "downloadsSince"),
            )
        },
        "/check": {
            "post": _operation(
                "checkLock", "Is each pin of a lock file served", "read", ("200", "LockCheck"),
                body="LockBody", errors=("400", "413"),
            )
        },
        f"{release}/promote": {
            "post": _release_decision("promoteRelease", "End a hold early", "PromoteBody")
        },
        f"{release}/block": {"post": _release_decision("blockRelease", "Block a release")},
        f"{release}/unblock": {"post": _release_decision("unblockRelease", "Lift a block")},
        "/projects/{project}/block": {"post": _project_decision("blockProject", "Block it all")},
        "/projects/{project}/unblock": {
            "post": _project_decision("unblockProject", "Lift a project block")
        },
        f"{release}/retry": {
            "post": _release_decision(
                "retryRelease", "Hold files a fetch refused again, for another try", "RetryBody"
            )
        },
        "/projects/{project}/retry": {
            "post": _project_decision(
                "retryProject", "Hold a project's files a fetch refused again", "RetryBody"
            )
        },
        "/projects/{project}/exemption": {
            "post": _operation(
                "exemptProject", "Exempt from the hold", "decide", ("200", "ExemptionResult"),
                params=exemption, body="ExemptionBody",
            ),
            "delete": _operation(
                "unexemptProject", "End an exemption", "decide", ("200", "ExemptionResult"),
                params=exemption, body="ReasonBody",
            ),
        },
        "/cutoff": {
            "put": _operation(
                "setCutoff", "Nothing uploaded after T", "decide", ("200", "CutoffResult"),
                body="CutoffBody",
            ),
            "delete": _operation(
                "clearCutoff", "Lift the cutoff", "decide", ("200", "CutoffResult"),
                body="ReasonBody",
            ),
        },
        "/tokens": {
            "post": _operation(
                "createToken", "A new token, shown once", "decide", ("201", "TokenCreated"),
                body="TokenBody",
            )
        },
        "/tokens/{name}": {
            "delete": _operation(
                "revokeToken", "Revoke a token", "decide", ("200", "TokenRevoked"),
                params=("tokenName",),
            )
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }  # fmt: skip


def openapi_document() -> dict[str, Any]:
    """The document, a fresh copy each time: callers may change theirs."""
    return copy.deepcopy(_document())


@cache
def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Lazaretto admin API",
            "version": __version__,
            "description": (
                "Decisions on a vetted mirror's holds. Every decision is recorded with the "
                "token's name as actor and the given reason. Errors are RFC 9457 problem "
                "documents."
            ),
        },
        "servers": [{"url": "/-/admin/api/v1"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `lazaretto token create`, as 'Bearer <token>'.",
                }
            },
            "schemas": {**_result_schemas(), **_body_schemas(), **_problem_schemas()},
            "parameters": _parameters(),
            "headers": {
                "ETag": {
                    "schema": TEXT,
                    "description": "Over the state and state_version of each file; for If-Match.",
                }
            },
            "responses": {f"E{code}": value for code, value in _error_responses().items()},
        },
    }
