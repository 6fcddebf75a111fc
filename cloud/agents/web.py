"""Agent URLs: the aiohttp sub-application every agent's URL is served by.

Mounted at ``/agent`` on the cloud's one HTTP server (``cloud/web.py``: beside the
REST API under ``/v5`` when ``cloud serve`` has ``--api-port``, or on a server of
its own), so an agent's URL is ``http://HOST:PORT/agent/<agent id>``::

    ANY /agent/{agent_id}            path ""        -> that agent's http.onrequest
    ANY /agent/{agent_id}/{rest}     path "/rest"      (path: minus the agent ID,
                                                        query: a table, headers: lower-case)

The body is read within the server's limits (413, 408 as for the API); the
answer is whatever the agent's ``httpresponse.send`` says, untouched by the error
middleware; an unknown agent, or one without a request handler, is 404; an
agent that does not answer in time, 504; one whose handler failed, 500.
"""

from __future__ import annotations

from aiohttp import web

from impfactory.cloud.agents.host import Agents
from impfactory.cloud.web import read_body

PREFIX = "/agent"


def agent_app(agents: Agents) -> web.Application:
    """The sub-application serving ``agents``' URLs (mount it at ``PREFIX``)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        agent_id = request.match_info["agent_id"]
        rest = request.match_info.get("rest")
        path = "" if rest is None else "/" + rest
        body = await read_body(request)
        answer = await agents.serve(agent_id, request.method, path, dict(request.query),
                                    dict(request.headers), body)
        return web.Response(status=answer.status, headers=answer.headers, body=answer.body)

    app = web.Application()
    app.router.add_route("*", "/{agent_id}", handle)
    app.router.add_route("*", "/{agent_id}/{rest:.*}", handle)
    return app
