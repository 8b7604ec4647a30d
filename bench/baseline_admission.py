"""The baseline for bench/admission.py: the same server stack answering a fixed allow.

A tiny FastAPI app on one uvicorn worker, over the same TLS certificate, that
reads the AdmissionReview body and returns a fixed `allowed: true` response
(no parsing, no policy, no patch). It is what FastAPI + uvicorn + TLS cost
before sidecred does any work.

    python3 bench/baseline_admission.py PORT TLS_CERT TLS_KEY
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

ALLOW = (
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",'
    b'"response":{"uid":"00000000-0000-4000-8000-000000000000","allowed":true}}'
)


def create_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/mutate")
    async def mutate(request: Request) -> Response:
        await request.body()
        return Response(ALLOW, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    uvicorn.run(
        create_app(),
        host="127.0.0.1",
        port=port,
        ssl_certfile=cert,
        ssl_keyfile=key,
        log_config=None,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
