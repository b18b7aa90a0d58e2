"""
The floor: the least a Twisted relay can do, to read the proxy's figures against.

One leaf Resource and one pooled Agent; no auth, no metering, no JSON parsing.
The body is sent in the same reactor turn; the answer is relayed as it
arrives, the upstream socket registered as the client's producer.

``python bench/floor_relay.py --listen PORT --upstream http://127.0.0.1:FAKEPORT [--api-key K]``
"""

import argparse

from twisted.internet import defer, protocol, reactor
from twisted.web import client, http_headers, resource, server
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

_HOP = {b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"content-encoding"}


@implementer(IBodyProducer)
class Body:
    def __init__(self, data):
        self.data, self.length = data, len(data)

    def startProducing(self, consumer):
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self): pass
    def resumeProducing(self): pass
    def stopProducing(self): pass


class Pipe(protocol.Protocol):
    def __init__(self, request):
        self.request, self.gone = request, False

    def connectionMade(self):
        self.request.registerProducer(self.transport, True)

    def dataReceived(self, data):
        self.request.write(data)

    def connectionLost(self, reason):
        if not self.gone:
            self.request.unregisterProducer()
            self.request.finish()


class Relay(resource.Resource):
    isLeaf = True

    def __init__(self, upstream, api_key):
        super().__init__()
        pool = client.HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost, pool.retryAutomatically = 1024, False
        self.agent, self.upstream = client.Agent(reactor, pool=pool), upstream.encode()
        self.auth = [b"Bearer " + api_key.encode()] if api_key else None

    def render(self, request):
        headers = http_headers.Headers({b"content-type": [b"application/json"]})
        if self.auth:
            headers.setRawHeaders(b"authorization", self.auth)
        data = request.content.read()
        d = self.agent.request(request.method, self.upstream + request.uri, headers, Body(data) if data else None)
        state = {"pipe": None, "gone": False}

        def lost(_):
            state["gone"] = True
            pipe = state["pipe"]
            if pipe is None:
                d.cancel()
            else:
                pipe.gone = True
                pipe.transport.stopProducing()

        def got(response):
            request.setResponseCode(response.code)
            for name, values in response.headers.getAllRawHeaders():
                if name.lower() not in _HOP:
                    request.responseHeaders.setRawHeaders(name, values)
            state["pipe"] = Pipe(request)
            response.deliverBody(state["pipe"])

        def failed(_):
            if not state["gone"]:
                request.setResponseCode(502)
                request.finish()

        request.notifyFinish().addErrback(lost)
        d.addCallbacks(got, failed)
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
