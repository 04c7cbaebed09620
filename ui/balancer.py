"""A sticky front for several app server processes (``RERELRP_WORKERS=N python -m ui.serve``).

Why: one Python process runs one page script at a time (the GIL), so thirty students opening the same
link at once queue behind each other however much the results are shared; N processes on N cores
take their share each (bench/README "Thirty students"). Why sticky: a Streamlit session (its
websocket, its uploads and downloads, its training) lives in the process that opened it, so every
connection of one browser must reach the same process. The first response to a browser without the
cookie sets it to the process with the fewest open connections; later connections follow the cookie.

It forwards bytes only (HTTP and the websocket after its upgrade alike): what a request asks for is
the processes' business, and each of them is a full app server of its own.
"""
import asyncio
import re

COOKIE = "rerelrp_worker"
HEAD_LIMIT = 64 * 1024      # request and response heads larger than this are refused
_STICKY = re.compile(rb"^cookie:.*\b" + COOKIE.encode() + rb"=(\d+)", re.IGNORECASE | re.MULTILINE)


class Balancer:
    def __init__(self, worker_ports, host="127.0.0.1"):
        self.ports, self.host = list(worker_ports), host
        self.open = [0] * len(self.ports)       # connections being forwarded, per process

    def choose(self, head):
        """The process a request goes to, and whether its response must set the cookie."""
        found = _STICKY.search(head)
        if found and int(found.group(1)) < len(self.ports):
            return int(found.group(1)), False
        return self.open.index(min(self.open)), True

    async def handle(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        worker, set_cookie = self.choose(head)
        self.open[worker] += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.ports[worker],
                                                                 limit=HEAD_LIMIT)
        except OSError:
            self.open[worker] -= 1
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await _close(writer)
            return
        up_writer.write(head)
        try:
            await asyncio.gather(_pipe(reader, up_writer),
                                 _respond(up_reader, writer, worker if set_cookie else None))
        finally:
            self.open[worker] -= 1
            await _close(up_writer)
            await _close(writer)


async def _respond(up_reader, writer, cookie_worker):
    """Forward the process's answers; the first one sets the cookie when ``cookie_worker`` is given."""
    if cookie_worker is not None:
        try:
            head = await up_reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return
        cookie = f"Set-Cookie: {COOKIE}={cookie_worker}; Path=/; HttpOnly; SameSite=Lax\r\n".encode()
        writer.write(head[:-2] + cookie + b"\r\n")
    await _pipe(up_reader, writer)


async def _pipe(reader, writer):
    try:
        while data := await reader.read(64 * 1024):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        if writer.can_write_eof():
            try:
                writer.write_eof()
            except OSError:
                pass


async def _close(writer):
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass


async def serve(host, port, worker_ports):
    balancer = Balancer(worker_ports)
    server = await asyncio.start_server(balancer.handle, host, port, limit=HEAD_LIMIT)
    async with server:
        await server.serve_forever()
