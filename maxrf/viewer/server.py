"""The viewer's HTTP layer: thin Starlette handlers over ``ViewerData``; bad parameters give
HTTP 400 with a one-line JSON error and the server keeps serving."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from ..errors import MaxrfError
from .data import ViewerData, png

STATIC = Path(__file__).with_name("static")


def _json(data) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), media_type="application/json",
                    headers={"Cache-Control": "no-store"})


def _png(image: np.ndarray | bytes) -> Response:
    body = image if isinstance(image, bytes) else png(image)
    return Response(body, media_type="image/png", headers={"Cache-Control": "no-store"})


def _npy(image: np.ndarray) -> Response:
    buf = io.BytesIO()
    np.save(buf, image)
    return Response(buf.getvalue(), media_type="application/octet-stream")


def create_app(datastack: str | Path) -> Starlette:
    """The viewer app for one datastack (opened once; raises MaxrfError if it cannot be)."""
    data = ViewerData(datastack)

    def handler(make):
        def endpoint(request: Request) -> Response:  # sync: Starlette runs it in a thread
            params = dict(request.query_params)
            started = time.perf_counter()
            try:
                response = make(params)
            except MaxrfError as exc:
                return JSONResponse({"error": exc.reason}, status_code=400)
            except Exception as exc:  # never a traceback to the page; the server keeps serving
                return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)
            ms = 1000 * (time.perf_counter() - started)
            response.headers["Server-Timing"] = f"app;dur={ms:.1f}"
            return response

        return endpoint

    routes = [
        Route("/", lambda r: FileResponse(STATIC / "index.html")),
        Route("/viewer.js", lambda r: FileResponse(STATIC / "viewer.js",
                                                     media_type="text/javascript")),
        Route("/api/info", handler(lambda p: _json(data.info()))),
        Route("/api/spectrum", handler(lambda p: _json(data.spectrum(p)))),
        Route("/api/mean_spectrum", handler(lambda p: _json(data.mean_spectrum(p)))),
        Route("/api/band.png", handler(lambda p: _png(data.colorize(data.band(p), p)))),
        Route("/api/band.npy", handler(lambda p: _npy(data.band(p)))),
        Route("/api/total.png", handler(lambda p: _png(data.colorize(data.total(), p)))),
        Route("/api/map.png", handler(
            lambda p: _png(data.colorize(data.element_map(p.get("element", "")), p)))),
        Route("/api/map.npy", handler(lambda p: _npy(data.element_map(p.get("element", ""))))),
        Route("/api/composite.png", handler(lambda p: _png(data.composite_image(p)))),
    ]
    return Starlette(routes=routes)


def serve(datastack: str | Path, host: str = "127.0.0.1", port: int = 8765,
          open_browser: bool = True) -> None:
    """Serve the viewer until Ctrl-C (prints its URL first)."""
    import uvicorn

    app = create_app(datastack)
    url = f"http://{host}:{port}/"
    print(f"maxrf viewer of {datastack} at {url}  (Ctrl-C stops it)", flush=True)
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, lambda: webbrowser.open(url)).start()
    uvicorn.run(app, host=host, port=port, log_level="warning")
