"""
The treq floor: the least a relay built on treq (as dd0c-route is) can do.

Beside ``floor_relay.py`` (a bare ``Agent``): the same leaf Resource, but the
upstream request goes through treq's ``HTTPClient`` the way its documentation
writes one -- ``client.request(..., unbuffered=True)`` and ``treq.collect``
writing each piece to the client as it arrives.  No auth, no metering, no JSON
parsing.  Its own choices are treq's defaults but for two a relay must make:
a pooled, persistent connection pool, and an unbuffered response.  So
*proxy/treq floor* is the price of what dd0c-route does on top of the
library it is built on, and *treq floor/Agent floor* the price of treq.

``python bench/floor_treq.py --listen PORT --upstream http://127.0.0.1:FAKEPORT [--api-key K]``
"""

import argparse

import treq
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.web import client, resource, server

_HOP = {b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"content-encoding"}


class Relay(resource.Resource):
    isLeaf = True

    def __init__(self, upstream, api_key):
        super().__init__()
        pool = client.HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost, pool.retryAutomatically = 1024, False
        self.http = HTTPClient(client.Agent(reactor, pool=pool))
        self.upstream = upstream
        self.headers = {b"content-type": [b"application/json"]}
        if api_key:
            self.headers[b"authorization"] = [b"Bearer " + api_key.encode()]

    def render(self, request):
        data = request.content.read()
        url = self.upstream + request.uri.decode("ascii")
        d = self.http.request(request.method.decode("ascii"), url, data=data or None,
                              headers=self.headers, unbuffered=True)
        state = {"gone": False}

        def lost(_):
            state["gone"] = True
            d.cancel()

        def got(response):
            request.setResponseCode(response.code)
            for name, values in response.headers.getAllRawHeaders():
                if name.lower() not in _HOP:
                    request.responseHeaders.setRawHeaders(name, values)
            return treq.collect(response, request.write)

        def done(_):
            if not state["gone"]:
                request.finish()

        def failed(_):
            if not state["gone"]:
                request.setResponseCode(502)
                request.finish()

        request.notifyFinish().addErrback(lost)
        d.addCallback(got)
        d.addCallbacks(done, failed)
        return server.NOT_DONE_YET


class QuietSite(server.Site):
    def log(self, request): pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--api-key", default="")
    args = parser.parse_args()
    site = QuietSite(Relay(args.upstream.rstrip("/"), args.api_key), parsePOSTFormSubmission=False)
    reactor.listenTCP(args.listen, site, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
