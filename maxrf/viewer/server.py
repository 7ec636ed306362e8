"""The viewer's HTTP layer: thin Starlette handlers over ``ViewerData``; bad parameters give
HTTP 400 with a one-line JSON error and the server keeps serving."""

from __future__ import annotations

import errno
import io
import ipaddress
import json
import socket
import time
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from maxrf.errors import MaxrfError
from maxrf.viewer.data import ViewerData, ViewerError, png

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
    return Response(buf.getvalue(), media_type="application/octet-stream",
                    headers={"Cache-Control": "no-store"})


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _host_name(value: str) -> str:
    """The host part of a Host header or an origin's netloc (port and brackets removed)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _local_host(name: str, served: str) -> bool:
    """True for a name that cannot be a DNS-rebinding domain: loopback names, IP literals (a page
    can only send those for itself) and the name the server was bound to. Any other name (a
    domain an attacker resolves to 127.0.0.1) is refused, as Jupyter does."""
    if name in LOOPBACK_NAMES or name == served.lower():
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class LocalOnly:
    """ASGI middleware: refuse requests whose Host (or Origin, when a page sends one) is not this
    machine's viewer, so no other web page can read the datastack through the browser."""

    def __init__(self, app, served_host: str = "127.0.0.1") -> None:
        self.app = app
        self.served = served_host

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            host = _host_name(headers.get("host", ""))
            origin = headers.get("origin")
            bad = None
            if not _local_host(host, self.served):
                bad = f"Host {headers.get('host', '')!r} is not this viewer"
            elif origin is not None and origin.split("://", 1)[-1].lower() != headers.get(
                    "host", "").lower():
                bad = f"Origin {origin!r} is not this viewer"  # another page's script
            if bad:
                response = JSONResponse({"error": f"forbidden: {bad}"}, status_code=403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(datastack: str | Path, served_host: str = "127.0.0.1",
               pixel_size_mm: float | None = None) -> Starlette:
    """The viewer app for one datastack (raises MaxrfError if it cannot be opened); it answers
    only requests addressed to this machine (``served_host`` or loopback)."""
    data = ViewerData(datastack, pixel_size_mm)
    refits = Refits(data)

    def handler(make):
        def endpoint(request: Request) -> Response:  # sync: Starlette runs it in a thread
            params = dict(request.query_params)
            started = time.perf_counter()
            try:
                data.refresh()
                response = make(params)
            except MaxrfError as exc:
                return JSONResponse({"error": exc.reason}, status_code=400)
            except Exception as exc:  # never a traceback to the page; the server keeps serving
                return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)
            ms = 1000 * (time.perf_counter() - started)
            response.headers["Server-Timing"] = f"app;dur={ms:.1f}"
            return response

        return endpoint

    start_refit = handler(lambda p: _json(refits.start(p.get("add", ""))))

    def refit_endpoint(request: Request) -> Response:
        # a write: only from the viewer's own page (a custom header, which a page of another
        # origin cannot send without a CORS preflight this server never grants)
        if request.headers.get("x-maxrf-action") != "refit":
            return JSONResponse({"error": "refits come from the viewer page only"},
                                status_code=403)
        return start_refit(request)

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
        Route("/api/total.npy", handler(lambda p: _npy(data.total()))),
        Route("/api/map.png", handler(
            lambda p: _png(data.colorize(data.element_map(p.get("element", "")), p)))),
        Route("/api/map.npy", handler(lambda p: _npy(data.element_map(p.get("element", ""))))),
        Route("/api/composite.png", handler(lambda p: _png(data.composite_image(p)))),
        Route("/api/photo.png", handler(lambda p: _png(data.photo_on_scan()))),
        Route("/api/materials.npy", handler(lambda p: _npy(data.materials()))),
        Route("/api/material_spectrum", handler(lambda p: _json(data.material_spectrum(p)))),
        Route("/api/quality.npy", handler(lambda p: _npy(data.quality(p)))),
        Route("/api/lines_near", handler(lambda p: _json(data.lines_near(p)))),
        Route("/api/refit", refit_endpoint, methods=["POST"]),
        Route("/api/refit", handler(lambda p: _json(refits.status()))),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(LocalOnly, served_host=served_host)
    return app


class Refits:
    """"Add element and refit" from the page: the element-map step run through the pipeline
    (a new keyed version of the maps) in a background thread, one at a time; the page polls
    ``GET /api/refit`` and reloads when it is done."""

    def __init__(self, data: ViewerData) -> None:
        import threading

        self.data, self.lock = data, threading.Lock()
        self.state = {"state": "idle"}

    def start(self, add: str) -> dict:
        import threading

        from maxrf.pipeline.elementmaps import parse_elements
        from maxrf.pipeline.params import check_parameters

        new = parse_elements(add) or []
        if not new:
            raise ViewerError("give an element to add (add=Zn)")
        params = self.data.map_params()
        added = list(dict.fromkeys([*(params.get("add_elements") or []), *new]))
        check_parameters(add_elements=added)
        with self.lock:
            if self.state.get("state") == "running":
                raise ViewerError("a refit is already running")
            self.state = {"state": "running", "add": added}
        threading.Thread(target=self._run, args=(params, added), daemon=True).start()
        return dict(self.state)

    def _run(self, params: dict, added: list[str]) -> None:
        from maxrf.pipeline.runner import map_elements

        started = time.perf_counter()
        try:
            drop = [el for el in params.get("drop_elements") or [] if el not in added] or None
            run = map_elements(self.data.path, elements=params.get("elements"), add=added,
                               drop=drop, anode=params.get("anode"),
                               tube_kv=params.get("tube_kv"))
            state = {"state": "done", "add": added, "key": run.key,
                     "seconds": round(time.perf_counter() - started, 1)}
        except MaxrfError as exc:
            state = {"state": "error", "add": added, "error": exc.reason}
        except Exception as exc:  # the page shows it; the server keeps serving
            state = {"state": "error", "add": added, "error": f"{type(exc).__name__}: {exc}"}
        with self.lock:
            self.state = state

    def status(self) -> dict:
        with self.lock:
            return dict(self.state)


PORT_TRIES = 20  # a busy port: the next ones are tried


def bind(host: str, port: int, tries: int = PORT_TRIES) -> tuple[socket.socket, bool]:
    """A listening socket on ``host`` at ``port`` or, when that is taken, the next free one
    (port 0: any); returns it and whether the port moved. One-line error when none is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for p in [port] if port == 0 else range(port, min(port + tries, 65536)):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, p))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            last = exc
            if exc.errno != errno.EADDRINUSE:
                break
            continue
        return sock, sock.getsockname()[1] != port and port != 0
    why = last.strerror if last is not None else "no port"
    span = f"port {port}" if port == 0 or tries == 1 else f"ports {port}-{port + tries - 1}"
    raise MaxrfError(f"cannot serve the viewer on {host}, {span} ({why}); try --port")


def serve(datastack: str | Path, host: str = "127.0.0.1", port: int = 8765,
          open_browser: bool = True, pixel_size_mm: float | None = None) -> None:
    """Serve the viewer until Ctrl-C: bind first (the next free port when ``port`` is taken),
    then say where, then open the browser there."""
    import uvicorn

    app = create_app(datastack, served_host=host, pixel_size_mm=pixel_size_mm)
    sock, moved = bind(host, port)
    real = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{real}/"
    if moved:
        print(f"port {port} is busy: using {real}", flush=True)
    print(f"maxrf viewer of {datastack} at {url}  (Ctrl-C stops it)", flush=True)
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, lambda: webbrowser.open(url)).start()
    config = uvicorn.Config(app, log_level="warning")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled (as uvicorn.run does)
        pass
