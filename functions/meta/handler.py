"""Liveness and the OpenAPI document of every function's routes."""


from aws_lambda_powertools.event_handler.api_gateway import Router

from relay_cloud.http.app import build_app, entrypoint

router = Router()


@router.get("/health", summary="Liveness", tags=["meta"])
def health():
    return {"status": "ok"}


@router.get("/api/openapi.json", summary="The OpenAPI 3 document of every route", tags=["meta"])
def openapi_document():
    from relay_cloud.http.openapi import build_document

    return build_document()


app = build_app(router)
lambda_handler = entrypoint(app)
