"""The local app (``maskgen app``): a page on 127.0.0.1 to sample with any fill rule and
guidance, watch MaskGIT's iterative decoding (Chang et al. 2022, Sec. 3.2) step by step,
download the steps as a GIF, and paint a mask over an uploaded image to inpaint it
(ibid. Sec. 4.3; ``maskgen.pipelines.inpainting``).

Why the standard library's ``http.server`` and a plain page, not Gradio or Flask: the app
needs five routes, a file upload and a live stream of steps, which ``ThreadingHTTPServer``
with Server-Sent Events and a ``<canvas>`` in vanilla JavaScript do in a few hundred lines;
so the app adds no dependency to the install at all, starts in a second, and its test
drives the same page a user sees. It binds to 127.0.0.1 unless told otherwise: it is a
local tool with no authentication.

    server = make_server(MaskGen.load(folder), port=8765)
    server.serve_forever()

Modules: ``inputs`` (requests checked, sampler specs built), ``frames`` (partial states as
pictures, the GIF), ``jobs`` (runs and their event streams), ``server`` (the routes).
"""

from .server import AppServer, make_server

__all__ = ["AppServer", "make_server"]
