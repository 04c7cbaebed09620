"""The sticky front of several app server processes (ui/balancer.py), on real sockets: two small
HTTP servers stand in for the app's processes."""
import asyncio

from ui.balancer import Balancer


async def worker(name):
    """An HTTP server that answers every request with its name; its port."""
    async def answer(reader, writer):
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + name)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()              # the front closed the connection
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def ask(port, cookie=None, head=None):
    """One request through the front: (status line, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    extra = f"Cookie: a=b; rerelrp_worker={cookie}\r\n" if cookie is not None else ""
    writer.write(head or f"GET /_stcore/health HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
    try:
        response = await asyncio.wait_for(reader.read(4096), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    header, _, body = response.partition(b"\r\n\r\n")
    return header.decode(), body


def test_new_browsers_are_shared_out_and_then_follow_their_cookie():
    async def scenario():
        (one, port0), (two, port1) = await worker(b"0"), await worker(b"1")
        balancer = Balancer([port0, port1])
        front = await asyncio.start_server(balancer.handle, "127.0.0.1", 0)
        port = front.sockets[0].getsockname()[1]
        async with one, two, front:
            header, body = await ask(port)                 # a new browser: the process with fewest
            assert body == b"0" and "Set-Cookie: rerelrp_worker=0;" in header
            balancer.open[0] += 5                          # process 0 busy with five open connections
            header, body = await ask(port)
            assert body == b"1" and "Set-Cookie: rerelrp_worker=1;" in header
            header, body = await ask(port, cookie=0)       # a known browser goes to its own process
            assert body == b"0" and "rerelrp_worker" not in header
            header, body = await ask(port, cookie=7)       # no such process: shared out anew
            assert body == b"1" and "Set-Cookie: rerelrp_worker=1;" in header
            balancer.open[0] -= 5
            for _ in range(100):                           # every closed connection is counted out
                if balancer.open == [0, 0]:
                    break
                await asyncio.sleep(0.02)
            assert balancer.open == [0, 0]
            # a request head larger than 64 kB is refused without reaching any process
            header, body = await ask(port, head=b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n")
            assert header == "" and body == b""
    asyncio.run(scenario())


def test_a_process_that_is_gone_answers_bad_gateway():
    async def scenario():
        server, dead = await worker(b"0")
        server.close()
        await server.wait_closed()
        front = await asyncio.start_server(Balancer([dead]).handle, "127.0.0.1", 0)
        async with front:
            header, _ = await ask(front.sockets[0].getsockname()[1])
            assert header.startswith("HTTP/1.1 502")
    asyncio.run(scenario())
