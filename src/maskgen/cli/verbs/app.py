"""``maskgen app``: the local web app (``maskgen.app``) on one model folder."""

from __future__ import annotations

import argparse

NAME = "app"
HELP = "A local page: pick class and sampler, watch the unmasking step by step, download it as a GIF, paint a mask to inpaint."
REQUIRED: tuple[str, ...] = ()
OUT = None


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model folder (default: the shipped reference model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda ...")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: PyTorch's choice)")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")


def run(args: argparse.Namespace) -> None:
    import torch

    from ...app import make_server
    from ...devices import resolve_device
    from ...errors import MaskgenError
    from ...pipelines import MaskGen
    from ...shipped import reference_dir
    from ...validate import integer

    if integer("--port", args.port, 0) > 65535:
        raise MaskgenError(f"--port must be in 0..65535, got {args.port}")
    if args.threads is not None:
        torch.set_num_threads(integer("--threads", args.threads, 1))
    mg = MaskGen.load(args.model or reference_dir(), device=resolve_device(args.device))
    server = make_server(mg, args.host, args.port, quiet=not args.verbose)
    print(f"maskgen app on {server.url} (model {mg.folder}); Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
