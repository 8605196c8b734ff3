"""What the sandbox's Vercel API answers, field for field in the shape of Vercel's OpenAPI
description (the excerpt the tests validate against): a deployment as a list item
(GET /v6|v7/deployments), in full (GET /v13/deployments/{id}), the project (GET /v9/projects),
and its rolling release and their config (GET /v1/projects/{id}/rolling-release[/config]),
the protection bypass secrets (PATCH /v1/projects/{id}/protection-bypass).

Values are plausible rather than real: one owner, one region, one creator. The one deliberate
difference is `url`: Vercel gives a bare host served over HTTPS, the sandbox a full http URL
with a path, since every deployment lives under one loopback port (`type: string` allows both).
"""

from __future__ import annotations

import secrets
import string

from atge_assets.sandbox.state import SandboxDeployment

NAME = "atge"
OWNER_ID = "team_atgesandbox"
REGION = "iad1"
PLAN = "hobby"
CREATOR = {"uid": "usr_atgesandbox", "username": "atge-sandbox",
           "email": "sandbox@atge.invalid"}


def _common(dep: SandboxDeployment, url: str, project_id: str, state: str) -> dict:
    """Fields a list item and a full deployment share."""
    ready = state == "READY"
    d = {
        "name": NAME, "projectId": project_id, "url": url, "type": "LAMBDAS",
        "createdAt": dep.created_ms, "buildingAt": dep.created_ms, "readyState": state,
        # Vercel's null target is a preview; its enum knows only production and staging.
        "target": "production" if dep.target == "production" else None,
        "creator": {"uid": CREATOR["uid"], "username": CREATOR["username"]},
        "inspectorUrl": f"https://vercel.com/atge-sandbox/{NAME}/{dep.id.removeprefix('dpl_')}",
        "meta": {"slowdown": str(dep.slowdown)},
        "source": "cli",
    }
    if ready:
        d["ready"] = dep.created_ms + int(dep.build_s * 1000)
        # A production deployment went live when created (or promoted); a preview never has.
        d["readySubstate"] = "PROMOTED" if dep.target == "production" else "STAGED"
    return d


def deployment_item(dep: SandboxDeployment, url: str, project_id: str, production_id: str | None,
                    state: str) -> dict:
    """One entry of GET /v6/deployments (and /v7, its SDK twin)."""
    d = _common(dep, url, project_id, state)
    live = state == "READY" and dep.target == "production"
    d.update({
        "uid": dep.id, "created": dep.created_ms, "state": state,
        "aliasAssigned": d["ready"] if live else False,
        "aliasError": None,
        "isRollbackCandidate": live and dep.id != production_id,
    })
    return d


def deployment(dep: SandboxDeployment, url: str, project_id: str, state: str) -> dict:
    """GET /v13/deployments/{id}: the answer with private fields, as the owner's token gets it."""
    d = _common(dep, url, project_id, state)
    d.update({
        "id": dep.id, "status": state, "public": False, "version": 2, "plan": PLAN,
        "ownerId": OWNER_ID, "createdIn": REGION, "regions": [REGION],
        "bootedAt": dep.created_ms, "buildSkipped": False,
        "aliasAssigned": state == "READY" and dep.target == "production", "aliasError": None,
        "alias": [], "build": {"env": []}, "env": [], "routes": None,
        "isInConcurrentBuildsQueue": False, "isInSystemBuildsQueue": False,
        "projectSettings": {"framework": "nextjs", "buildCommand": None, "devCommand": None,
                            "installCommand": None, "outputDirectory": None,
                            "commandForIgnoringBuildStep": None},
    })
    return d


def project(project_id: str, production: SandboxDeployment | None, url: str,
            state: str, settings: dict | None = None) -> dict:
    """GET /v9/projects/{id} (and PATCH's answer): `targets.production` is the live deployment,
    as Vercel keeps it; `settings` what PATCH changed."""
    live = None
    if production is not None:
        live = {
            "id": production.id, "name": NAME, "url": url, "type": "LAMBDAS",
            "createdAt": production.created_ms, "createdIn": REGION, "plan": PLAN,
            "private": True, "readyState": state, "target": "production", "userId": CREATOR["uid"],
            "creator": dict(CREATOR), "deploymentHostname": f"{NAME}-{production.id[4:]}",
            "meta": {"slowdown": str(production.slowdown)},
        }
        if state == "READY":
            live["readySubstate"] = "PROMOTED"
    config = {"functionDefaultRegions": [REGION]}
    return {
        "id": project_id, "name": NAME, "accountId": OWNER_ID, "framework": "nextjs",
        "nodeVersion": "22.x", "directoryListing": False,
        "resourceConfig": dict(config), "defaultResourceConfig": dict(config),
        "targets": {"production": live}, **(settings or {}),
    }


def new_bypass_secret() -> str:
    """What Vercel generates: 32 letters and digits."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))


def bypass_entry(created_ms: int) -> dict:
    """One secret of PATCH /v1/projects/{id}/protection-bypass's answer (keyed by the secret)."""
    return {"createdAt": created_ms, "createdBy": CREATOR["uid"], "scope": "automation-bypass"}


def _release_deployment(dep: SandboxDeployment | None, url: str) -> dict | None:
    if dep is None:
        return None
    return {"id": dep.id, "name": NAME, "url": url,
            "target": "production" if dep.target == "production" else None, "source": "cli",
            "createdAt": dep.created_ms, "readyState": dep.state(),
            "readyStateAt": dep.created_ms + int(dep.build_s * 1000)}


def _stage(stage: dict, index: int, count: int) -> dict:
    return {"index": index, "isFinalStage": index == count - 1,
            "targetPercentage": stage["targetPercentage"],
            "requireApproval": stage["requireApproval"], "duration": stage.get("duration"),
            "linearShift": False}


def rolling_release(rr: dict | None, deployment_of, url_of) -> dict:
    """GET /v1/projects/{id}/rolling-release, and the answer of approve-stage and complete."""
    if rr is None:
        return {"rollingRelease": None}
    n = len(rr["stages"])
    stages = [_stage(s, i, n) for i, s in enumerate(rr["stages"])]
    active = rr["state"] == "ACTIVE"

    def dep(dep_id):
        d = deployment_of(dep_id)
        return _release_deployment(d, url_of(d) if d else "")

    return {"rollingRelease": {
        "state": rr["state"], "currentDeployment": dep(rr["current"]),
        "canaryDeployment": dep(rr["canary"]), "queuedDeploymentId": None,
        "advancementType": rr["advancementType"], "stages": stages,
        "activeStage": stages[rr["stage"]] if active else None,
        "nextStage": stages[rr["stage"] + 1] if active and rr["stage"] + 1 < n else None,
        "startedAt": rr["startedAt"], "updatedAt": rr["updatedAt"],
    }}


def rolling_config(cfg: dict | None) -> dict:
    """GET /v1/projects/{id}/rolling-release/config: the template for the next releases."""
    if cfg is None:
        return {"rollingRelease": None}
    return {"rollingRelease": {
        "target": "production", "canaryResponseHeader": cfg["canaryResponseHeader"],
        "stages": [{"targetPercentage": s["targetPercentage"],
                    "requireApproval": s["requireApproval"],
                    **({"duration": s["duration"]} if s.get("duration") is not None else {})}
                   for s in cfg["stages"]]}}
