"""`scim2-server` (the Python reference SCIM server of the tests) with a listen backlog
of the caller's choosing: `python scripts/scim2_peer.py BACKLOG [scim2-server args...]`.

scim2-server serves through the standard library's `socketserver.TCPServer`, whose
`request_queue_size` (the `listen()` backlog) is 5, and its HTTP/1.0 handler closes every
connection after one answer, so each request is a new connection. With more concurrent
clients than that, connection attempts the server has not accepted yet are dropped and
retried after growing timeouts (1 s, 3 s, 7 s, ...): the benchmarks' 32 clients measured
those timeouts (a 27.8 s maximum), not the server. The benchmarks start it through this
file with a larger backlog so they compare service rates; the tests start the server as
shipped (the delivery engine must cope with a small backlog). (Not named scim2_server.py:
the script's directory comes first on the import path, and it would shadow the package.)
"""

import socketserver
import sys

if len(sys.argv) < 2 or not sys.argv[1].isdigit():
    sys.exit("usage: scim2_peer.py BACKLOG [scim2-server args...]")
socketserver.TCPServer.request_queue_size = int(sys.argv.pop(1))

from scim2_server.testserver.cli import main  # noqa: E402 (after the backlog is set)

sys.argv[0] = "scim2-server"
main()
