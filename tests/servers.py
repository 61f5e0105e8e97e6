"""Apps served on a real socket of 127.0.0.1 for the length of a test: for clients that take no in-memory transport
(the gateway's webhooks and disclosures, the simulator's acknowledgements go out through aiohttp)."""

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from aiohttp import web


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """`app` served until the block ends; yields its base URL."""
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    running = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        while not server.started:  # up once its socket accepts; a failure to start ends the task, raised here
            if running.done():
                running.result()
                raise RuntimeError("the test server stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{listening.getsockname()[1]}"
    finally:
        server.should_exit = True
        await running
        listening.close()


@asynccontextmanager
async def serving_aiohttp(app: web.Application) -> AsyncIterator[str]:
    """An aiohttp app served until the block ends; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
